"""Imports every built-in decoder module so each registers itself."""
