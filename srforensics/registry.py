"""One generic registry for plug-ins: models, metrics, degradation operators.

Targets are lazy: a registered ``"module:attr"`` string is imported only when
the name is used, so listing names is cheap. Third-party packages add entries
through an entry-point group; any importable ``"pkg.module:attr"`` can also be
named directly. Unknown names raise :class:`SRForensicsError` with a
"did you mean" suggestion.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Generic, TypeVar

from srforensics.errors import SRForensicsError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """One registered name: its target (object or ``"module:attr"``) and origin."""

    name: str
    target: Any
    origin: str = "builtin"
    description: str = ""


def import_target(spec: str) -> Any:
    """Import ``"pkg.module:attr"`` (``attr`` may be dotted)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SRForensicsError(f"{spec!r} is not of the form 'package.module:attribute'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise SRForensicsError(
            f"cannot import module {module_name!r} for {spec!r}: {exc}; "
            "check the name and that its package is installed"
        ) from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SRForensicsError(
                f"module {module_name!r} has no attribute {attr!r} (from {spec!r})"
            ) from None
    return obj


class Registry(Generic[T]):
    """Names and aliases mapped to lazily imported targets.

    Parameters
    ----------
    kind : str
        What the registry holds, used in messages ("model", "metric").
    entry_point_group : str, optional
        Entry-point group scanned (once, on first lookup) for third-party entries.
    """

    def __init__(self, kind: str, *, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}
        self._prefixes: dict[str, Any] = {}
        self._entry_points_loaded = False

    # -- registration -------------------------------------------------------
    def register(
        self,
        name: str,
        target: Any,
        *,
        aliases: tuple[str, ...] = (),
        description: str = "",
        origin: str = "builtin",
    ) -> None:
        """Register ``target`` (an object or a ``"module:attr"`` string) as ``name``."""
        key = self._key(name)
        if key in self._entries or key in self._aliases:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[key] = Entry(name=name, target=target, origin=origin, description=description)
        for alias in aliases:
            akey = self._key(alias)
            if akey in self._entries or akey in self._aliases:
                raise ValueError(f"{self.kind} alias {alias!r} is already registered")
            self._aliases[akey] = key

    def register_prefix(self, prefix: str, factory: Any) -> None:
        """Resolve ``"prefix:rest"`` by calling ``factory(rest)``; ``factory`` may be lazy."""
        self._prefixes[self._key(prefix)] = factory

    # -- lookup -------------------------------------------------------------
    def names(self) -> list[str]:
        """Registered names (built-in and entry points), sorted."""
        self._load_entry_points()
        return sorted(e.name for e in self._entries.values())

    def entries(self) -> Iterator[Entry]:
        self._load_entry_points()
        for key in sorted(self._entries):
            yield self._entries[key]

    def __contains__(self, name: str) -> bool:
        self._load_entry_points()
        key = self._key(name)
        return key in self._entries or key in self._aliases

    def canonical(self, name: str) -> str:
        """The registered name for ``name`` or one of its aliases."""
        self._load_entry_points()
        key = self._key(name)
        key = self._aliases.get(key, key)
        if key in self._entries:
            return self._entries[key].name
        return name

    def get(self, name: str) -> T:
        """Resolve ``name``: a registered name or alias, ``prefix:rest``, or ``module:attr``."""
        self._load_entry_points()
        key = self._key(name)
        key = self._aliases.get(key, key)
        if key in self._entries:
            entry = self._entries[key]
            if isinstance(entry.target, str):
                entry = Entry(
                    entry.name, import_target(entry.target), entry.origin, entry.description
                )
                self._entries[key] = entry
            return entry.target
        prefix, sep, rest = name.partition(":")
        if sep and self._key(prefix) in self._prefixes:
            factory = self._prefixes[self._key(prefix)]
            if isinstance(factory, str):
                factory = import_target(factory)
                self._prefixes[self._key(prefix)] = factory
            return factory(rest)
        if sep and prefix and rest:
            return import_target(name)
        raise SRForensicsError(self._unknown_message(name))

    def _unknown_message(self, name: str) -> str:
        choices = self.names() + sorted(n for n, k in self._aliases.items() if k in self._entries)
        close = difflib.get_close_matches(self._key(name), choices, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        known = ", ".join(self.names())
        return (
            f"unknown {self.kind} {name!r}{hint} Known: {known}; or give 'package.module:Attribute'"
        )

    # -- internals ----------------------------------------------------------
    @staticmethod
    def _key(name: str) -> str:
        return name.strip().lower().replace("_", "-")

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded or self.entry_point_group is None:
            return
        self._entry_points_loaded = True
        for ep in metadata.entry_points(group=self.entry_point_group):
            key = self._key(ep.name)
            if key in self._entries:
                continue  # built-ins win; a plug-in cannot shadow them silently
            origin = f"entry point ({ep.dist.name if ep.dist else 'unknown package'})"
            self._entries[key] = Entry(name=ep.name, target=ep.value, origin=origin)
