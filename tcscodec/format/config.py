"""One base for the dataclasses that travel as JSON dicts (headers, configs,
motion paths): ``to_dict`` / ``from_dict`` with one behaviour on unknown keys.

``from_dict`` refuses keys that are not fields with a
:class:`~tcscodec.errors.TcsValueError` naming them (a typo in a config file
must not be dropped silently, nor surface as a bare ``TypeError`` from the
constructor), and names the required fields that are missing.  A subclass
converts field values to and from their JSON form in :meth:`_to_json` and
:meth:`_from_json` (tuples stored as lists, arrays as nested lists).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from ..errors import TcsValueError

__all__ = ["ConfigDict"]

_T = TypeVar("_T", bound="ConfigDict")


class ConfigDict:
    """Mixin for a dataclass stored as a JSON object of its fields."""

    #: keys :meth:`to_dict` adds beyond the fields (derived values, e.g. a
    #: ratio): :meth:`from_dict` accepts and ignores them
    DERIVED_KEYS: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (see :meth:`_to_json`)."""
        return self._to_json(dataclasses.asdict(self))  # type: ignore[call-overload]  # a dataclass mixin

    @classmethod
    def from_dict(cls: type[_T], d: Mapping[str, Any]) -> _T:
        """Inverse of :meth:`to_dict`; missing keys take their defaults.

        Raises :class:`~tcscodec.errors.TcsValueError` for keys that are not
        fields and for missing fields that have no default.
        """
        if not isinstance(d, Mapping):
            raise TcsValueError(f"{cls.__name__} is read from a dict, not {type(d).__name__}")
        fields = [f for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]  # a dataclass mixin
        names = {f.name for f in fields}
        unknown = sorted(str(k) for k in d if k not in names and k not in cls.DERIVED_KEYS)
        if unknown:
            raise TcsValueError(f"unknown {cls.__name__} key(s) {', '.join(unknown)}; "
                                f"the fields are {', '.join(sorted(names))}")
        missing = [f.name for f in fields if f.name not in d and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise TcsValueError(f"{cls.__name__} lacks the key(s) {', '.join(missing)}")
        return cls(**cls._from_json({k: v for k, v in d.items() if k in names}))

    def _to_json(self, d: dict[str, Any]) -> dict[str, Any]:
        """Hook: ``asdict(self)`` made JSON-ready (default: as it is)."""
        return d

    @classmethod
    def _from_json(cls, d: dict[str, Any]) -> dict[str, Any]:
        """Hook: the known keys of a dict turned into constructor arguments
        (default: as they are)."""
        return d
