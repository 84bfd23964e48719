"""A small generic registry: register / get / list with did-you-mean errors.

Used for criteria, models, schedules and methods, so that every name lookup fails the same way:
``Unknown criterion 'talyor'. Did you mean 'taylor'? Available: fpgm, l1, taylor.``
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from medprune.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps lowercase snake-case names to objects (classes, factories).

    Args:
        kind: what the entries are, used in error messages ("criterion", "model").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, *, override: bool = False) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name``; raises on a duplicate unless ``override``."""

        def decorator(obj: T) -> T:
            self.add(name, obj, override=override)
            return obj

        return decorator

    def add(self, name: str, obj: T, *, override: bool = False) -> None:
        """Register ``obj`` under ``name`` (raises :class:`ConfigError` on a duplicate)."""
        if name in self._entries and not override:
            raise ConfigError(
                f"{self.kind} {name!r} is already registered; pass override=True to replace it."
            )
        self._entries[name] = obj

    def get(self, name: str) -> T:
        """Return the entry called ``name`` or raise a :class:`ConfigError` with suggestions."""
        if not isinstance(name, str):
            raise ConfigError(f"{self.kind} name must be a string; got {name!r}.")
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        """The error text for an unknown ``name``: did-you-mean plus the available names."""
        close = difflib.get_close_matches(name, list(self._entries), n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"Unknown {self.kind} {name!r}.{hint} Available: {', '.join(sorted(self._entries))}."

    def list(self, pattern: str = "*") -> list[str]:
        """Sorted names matching the shell-style ``pattern``."""
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
