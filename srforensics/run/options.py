"""Command-line options written once, on the configuration's fields.

A field of a configuration dataclass that users set from the command line carries an
:class:`Option` in its metadata (:func:`option`): its help, metavar, choices, value parser
and help group. :func:`add_options` makes the argparse options from them, and
:func:`given_options` reads back the values the user gave, so the CLI maps arguments onto
the configuration without naming a field. Choices are also checked when the configuration
is made (:func:`check_choices`), from Python as from the CLI.

Imports nothing heavy: ``srforensics --help`` builds its parser from these.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from srforensics.errors import SRForensicsError

# yaml: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.


@dataclass(frozen=True)
class Option:
    """How one configuration field appears on the command line.

    ``help`` is completed with the default (``default_text``, else the field's default);
    ``kind`` is ``value`` (one value), ``flag`` (``store_true``) or ``pairs`` (a repeatable
    ``KEY=VALUE`` whose values are parsed as YAML, collected into a dict); ``parse`` turns
    the text into the value; ``group`` titles the help section."""

    help: str
    group: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    parse: Callable[[str], Any] | None = None
    kind: str = "value"
    flag: str | None = None
    default_text: str | None = None


def option(default: Any = MISSING, *, default_factory: Any = MISSING, **kw: Any) -> Any:
    """A dataclass field that is also a command-line option (see :class:`Option`)."""
    meta = {"option": Option(**kw)}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE parsed as YAML (a plain string when it is not YAML)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    import yaml

    try:
        parsed = yaml.safe_load(value) if value else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed


def name_list(text: str) -> tuple[str, ...]:
    """``A,B,C`` as a tuple of names."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names")
    return names


def _options(cls: type) -> list[tuple[Any, Option]]:
    return [(f, f.metadata["option"]) for f in fields(cls) if "option" in f.metadata]


def _classes(groups: Mapping[str, type] | type) -> list[tuple[str | None, type]]:
    """``(group name, dataclass)`` of a mapping of groups, or of one dataclass."""
    if isinstance(groups, Mapping):
        return list(groups.items())
    return [(None, groups)]


def flag_of(f: Any, opt: Option) -> str:
    return opt.flag or "--" + f.name.replace("_", "-").removesuffix(
        "s" if opt.kind == "pairs" else ""
    )


def name_of(f: Any) -> str:
    """The name of a field's option outside the command line (in Python, and as its
    argparse ``dest``): its long flag without the dashes, where the flag is not the field's
    own name; otherwise the field's name."""
    opt = f.metadata.get("option")
    if opt is not None and opt.flag:
        return opt.flag.lstrip("-").replace("-", "_")
    return f.name


def option_names(groups: Mapping[str, type] | type) -> dict[str, tuple[str | None, str]]:
    """Every field of the ``groups``' dataclasses by its :func:`name_of`: its group and
    field name."""
    out: dict[str, tuple[str | None, str]] = {}
    for group, cls in _classes(groups):
        for f in fields(cls):
            out[name_of(f)] = (group, f.name)
    return out


def _default_text(f: Any, opt: Option) -> str | None:
    if opt.default_text is not None:
        return opt.default_text or None
    if opt.kind != "value" or f.default is MISSING or f.default is None:
        return None
    return str(f.default)


def add_options(parser: argparse.ArgumentParser, groups: Mapping[str, type] | type) -> None:
    """Add an option for every field that has one, of the ``groups``' dataclasses (or of
    one dataclass), in help groups.

    Every option's parsed default is None (an empty list for ``pairs``): a value the user
    did not give is left to the configuration, which may take it from elsewhere (an audit's
    protocol)."""
    sections: dict[str, Any] = {}
    for _, cls in _classes(groups):
        for f, opt in _options(cls):
            section = sections.get(opt.group) or sections.setdefault(
                opt.group, parser.add_argument_group(opt.group)
            )
            section.add_argument(flag_of(f, opt), **_argument(f, opt))


def _argument(f: Any, opt: Option) -> dict[str, Any]:
    """``add_argument``'s keywords for one field's option."""
    default = _default_text(f, opt)
    text = opt.help + (f" (default: {default})" if default else "")
    kw: dict[str, Any] = {"dest": name_of(f), "help": text}
    if opt.kind == "flag":
        kw.update(action="store_true", default=None)
    elif opt.kind == "pairs":
        kw.update(action="append", type=key_value, default=[], metavar=opt.metavar or "KEY=VALUE")
    else:
        kw.update(default=None, metavar=opt.metavar, choices=opt.choices)
        if opt.parse is not None:
            kw["type"] = opt.parse
    return kw


def given_options(args: argparse.Namespace, groups: Mapping[str, type] | type) -> dict[str, Any]:
    """The values of the options that the user gave, by :func:`name_of` (``pairs`` as dicts)."""
    out: dict[str, Any] = {}
    for _, cls in _classes(groups):
        for f, opt in _options(cls):
            value = getattr(args, name_of(f), None)
            if opt.kind == "pairs":
                out[name_of(f)] = dict(value or [])
            elif value is not None:
                out[name_of(f)] = value
    return out


def check_choices(config: Any) -> None:
    """Refuse a value outside a field's choices, naming the option."""
    for f, opt in _options(type(config)):
        value = getattr(config, f.name)
        if opt.choices is not None and value not in opt.choices:
            allowed = ", ".join(opt.choices[:-1]) + f" or {opt.choices[-1]}"
            raise SRForensicsError(f"{flag_of(f, opt)} must be {allowed}, got {value!r}")
