"""Typed config sections: how a parsed TOML/YAML table becomes a frozen dataclass, checked.

The types of a section's fields are its schema: ``Literal`` fields accept only their listed
values, ``tuple[X, ...]`` fields lists of X, ``X | None`` fields may be absent, and a field made
with :func:`setting` may carry a numeric range. Every check runs when a section is built (from a
file or in code, e.g. ``dataclasses.replace``), so a bad value stops the run with one line that
names the key, the value and what is allowed, before any data is read, instead of surfacing as a
traceback minutes later.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin, get_type_hints


class ConfigError(ValueError):
    """The experiment config is malformed; the message names the key."""


#: (test, what it asks) for a numeric setting; a tuple setting applies it to every element
Rule = tuple[Callable[[float], bool], str]
POSITIVE: Rule = (lambda v: v > 0, "> 0")
NON_NEGATIVE: Rule = (lambda v: v >= 0, ">= 0")
#: a share that may be 0 but not 1 (dropout: 1 would drop everything)
FRACTION: Rule = (lambda v: 0 <= v < 1, "in [0, 1)")
#: a share strictly between 0 and 1 (a holdout that leaves both sides non-empty)
OPEN_FRACTION: Rule = (lambda v: 0 < v < 1, "in (0, 1)")
PROBABILITY: Rule = (lambda v: 0 <= v <= 1, "in [0, 1]")
#: a share of a set that leaves something in it (a labelled fraction: 1 = all)
SHARE: Rule = (lambda v: 0 < v <= 1, "in (0, 1]")

_RULE, _NON_EMPTY = "rule", "non_empty"

T = TypeVar("T")


def setting(default: Any, rule: Rule | None = None, *, non_empty: bool = False) -> Any:
    """A section field with an optional numeric ``rule`` and, for tuples, ``non_empty``."""
    return dataclasses.field(default=default, metadata={_RULE: rule, _NON_EMPTY: non_empty})


def rule_text(field: dataclasses.Field[Any]) -> str | None:
    """What a field's rule asks (``"> 0"``), for messages and the generated docs."""
    rule = field.metadata.get(_RULE)
    parts = [] if rule is None else [rule[1]]
    if field.metadata.get(_NON_EMPTY):
        parts.append("not empty")
    return ", ".join(parts) or None


class Section:
    """A config section whose values are checked when it is built, from a file or in code.

    Checking here rather than where a config file is parsed means a section built in code
    (tests, ``dataclasses.replace``, a notebook) cannot carry a negative width or a misspelt
    method into torch either.
    """

    #: the section's key in the config file, for messages: ``config.<SECTION>.<key>``
    SECTION: ClassVar[str] = ""

    def __post_init__(self) -> None:
        check_section(self)

    @classmethod
    def where(cls) -> str:
        return f"config.{cls.SECTION}" if cls.SECTION else "config"


_HINTS: dict[type, dict[str, Any]] = {}


def type_hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a section (cached: sections are built often in tests)."""
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def check_section(section: Section) -> None:
    """Raise :class:`ConfigError` for the first value its type, rule or non-emptiness refuses."""
    hints = type_hints(type(section))
    for field in dataclasses.fields(section):  # type: ignore[arg-type]
        key = f"{section.where()}.{field.name}"
        value = getattr(section, field.name)
        check_choice(hints[field.name], value, key)
        rule = field.metadata.get(_RULE)
        if rule is not None:
            check_rule(rule, value, key)
        if field.metadata.get(_NON_EMPTY) and not value:
            raise ConfigError(f"{key} must not be empty, got {value!r}")


def check_rule(rule: Rule, value: Any, key: str) -> None:
    ok, wanted = rule
    for item in value if isinstance(value, tuple) else (value,):
        if isinstance(item, int | float) and not isinstance(item, bool) and not ok(item):
            raise ConfigError(f"{key} must be {wanted}, got {value!r}")


def allowed_values(tp: Any) -> tuple[Any, ...] | None:
    """The values a ``Literal`` type (or a tuple or optional of one) allows; None if unbounded."""
    origin = get_origin(tp)
    if origin is Literal:
        return get_args(tp)
    if origin is tuple or _is_optional(tp):
        inner = [a for a in get_args(tp) if a is not type(None) and a is not Ellipsis]
        return allowed_values(inner[0]) if len(inner) == 1 else None
    return None


def check_choice(tp: Any, value: Any, key: str) -> None:
    """Refuse a value outside a ``Literal`` field's choices (every element of a tuple field)."""
    allowed = allowed_values(tp)
    if allowed is None or value is None:
        return
    items = value if isinstance(value, tuple) and get_origin(tp) is not Literal else (value,)
    for item in items:
        if item not in allowed:
            raise ConfigError(
                f"{key}: {item!r} is not allowed (allowed: {', '.join(map(repr, allowed))})"
            )


def _is_optional(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType) and type(None) in get_args(tp)


def type_name(tp: Any) -> str:
    """A reader's name of a field type: ``integer``, ``list of number``, ``one of "a", "b"``."""
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(f'"{v}"' if isinstance(v, str) else repr(v)
                                     for v in get_args(tp))
    if origin is tuple:
        inner = type_name(get_args(tp)[0])
        return f"list of {inner}s" if get_origin(get_args(tp)[0]) is not Literal else (
            f"list, each {inner}")
    if _is_optional(tp):
        options = [a for a in get_args(tp) if a is not type(None)]
        return " or ".join(type_name(a) for a in options) + ", optional"
    if dataclasses.is_dataclass(tp):
        return "table"
    return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(
        getattr(tp, "__name__", ""), str(tp))


def coerce(tp: Any, value: Any, where: str) -> Any:
    """Convert a parsed TOML/YAML value to the annotated type, or say what was expected."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return build_dataclass(tp, value, where)  # type: ignore[arg-type]
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(coerce(get_args(tp)[0], item, f"{where}[{i}]") for i, item in enumerate(value))
    if _is_optional(tp):
        if value is None:
            return None
        inner = [a for a in get_args(tp) if a is not type(None)]
        return coerce(inner[0], value, where) if len(inner) == 1 else value
    if origin is Literal:
        check_choice(tp, value, where)
        return value
    if isinstance(value, bool) and tp in (int, float):
        raise ConfigError(f"{where}: expected {type_name(tp)}, got {value!r}")
    if tp is float and isinstance(value, int):
        return float(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {type_name(tp)}, got {value!r}")
    return value


def build_dataclass(cls: type[T], values: dict[str, Any], where: str = "config") -> T:
    """Build a (checked) dataclass from a dict, naming unknown and missing keys with their path."""
    hints = type_hints(cls)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = [f.name for f in fields]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(names)})")
    missing = [
        f.name for f in fields
        if f.name not in values and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}.{missing[0]}: required, but not given")
    kwargs = {k: coerce(hints[k], v, f"{where}.{k}") for k, v in values.items()}
    return cls(**kwargs)
