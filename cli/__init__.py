"""The ``tcscodec`` command line (installed as ``tcscodec.cli``)."""
