"""From pydantic's ``ValidationError`` to a :class:`ConfigError` that names the dotted key, the
value received and what is allowed (with a did-you-mean for unknown keys and misspelt choices).

The same phrases describe each key's type in ``docs/config.md`` (:func:`describe_field`).
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import annotated_types as at
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from typing_extensions import NotRequired, Required, is_typeddict

from medprune.config._models import RecipeConfig
from medprune.errors import ConfigError
from medprune.tasks.recipe import TrainRecipe

# one field of a model: its annotation and (for pydantic models) its FieldInfo
Slot = tuple[Any, "FieldInfo | None"]


# ----------------------------------------------------------------------------- describing types
def _number(v: float) -> str:
    return f"{v:g}"


def _bounds(metadata: Sequence[Any]) -> tuple[str, str | None, str | None]:
    """``(' >= 0', lower, upper)``: the phrase of numeric bounds and each side's bracket form."""
    lower = upper = None
    for m in metadata:
        if isinstance(m, at.Ge):
            lower = f"[{_number(m.ge)}"
        elif isinstance(m, at.Gt):
            lower = f"({_number(m.gt)}"
        elif isinstance(m, at.Le):
            upper = f"{_number(m.le)}]"
        elif isinstance(m, at.Lt):
            upper = f"{_number(m.lt)})"
    if lower and upper:
        return f" in {lower}, {upper}", lower, upper
    if lower:
        return f" {'>=' if lower[0] == '[' else '>'} {lower[1:]}", lower, upper
    if upper:
        return f" {'<=' if upper[-1] == ']' else '<'} {upper[:-1]}", lower, upper
    return "", None, None


def _min_length(metadata: Sequence[Any]) -> int:
    return max([m.min_length for m in metadata if isinstance(m, at.MinLen)], default=0)


_PLURAL = {
    "an integer": "integers",
    "a number": "numbers",
    "a string": "strings",
    "a fraction": "fractions",
    "a mapping": "mappings",
    "true or false": "true/false values",
}


def _plural(phrase: str) -> str:
    for single, plural in _PLURAL.items():
        if phrase.startswith(single):
            return plural + phrase[len(single) :]
    return f"values, each {phrase}"


def _unpack(tp: Any, metadata: Sequence[Any] = ()) -> tuple[Any, list[Any]]:
    """``Annotated[X, Field(ge=0)]`` -> ``(X, [Ge(0)])``."""
    meta = list(metadata)
    while typing.get_origin(tp) in (Annotated, Required, NotRequired):
        tp, *extra = typing.get_args(tp)
        for x in extra:
            meta += list(x.metadata) if isinstance(x, FieldInfo) else [x]
    return tp, meta


def describe_type(tp: Any, metadata: Sequence[Any] = ()) -> str:
    """``int`` with ``Gt(0)`` -> ``"an integer > 0"``; ``list[str]`` -> ``"a list of strings"``."""
    tp, meta = _unpack(tp, metadata)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        parts = [describe_type(a, meta) for a in args if a is not type(None)]
        parts += ["null"] if type(None) in args else []
        return ", ".join(parts[:-1]) + " or " + parts[-1] if len(parts) > 1 else parts[0]
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        some = "a non-empty list of " if _min_length(meta) else "a list of "
        return some + _plural(describe_type(item))
    if origin in (dict, Mapping) or tp is dict or is_typeddict(tp):
        return "a mapping"
    if tp is TrainRecipe:
        return "a mapping of training-recipe keys (epochs, lr, ...)"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "a mapping (a config section)"
    bounds, lower, upper = _bounds(meta)
    if tp is float and (lower, upper) == ("[0", "1)"):
        return "a fraction in [0, 1)"
    base = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return base.get(tp, getattr(tp, "__name__", str(tp))) + bounds


def describe_field(annotation: Any, info: FieldInfo | None) -> str:
    """The allowed values of one field: its ``allowed`` phrase, else from its type."""
    extra = info.json_schema_extra if info is not None else None
    if isinstance(extra, Mapping) and "allowed" in extra:
        return str(extra["allowed"])
    return describe_type(annotation, info.metadata if info is not None else ())


# ----------------------------------------------------------------------------- walking models
def fields_of(tp: Any) -> dict[str, Slot] | None:
    """The fields of a section type (a model, a TrainRecipe, a TypedDict), else None."""
    tp, _ = _unpack(tp)
    if tp is TrainRecipe:
        tp = RecipeConfig
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return {name: (f.annotation, f) for name, f in tp.model_fields.items()}
    if is_typeddict(tp):
        return {n: (h, None) for n, h in typing.get_type_hints(tp, include_extras=True).items()}
    return None


def flattened_of(tp: Any) -> str | None:
    """The field whose keys are written flat in the section (``train``: ``recipe``)."""
    return getattr(_unpack(tp)[0], "flattened", None)


def user_keys(tp: Any) -> list[str]:
    """The keys a user writes in a section (the flattened field replaced by its keys)."""
    fields = fields_of(tp) or {}
    flat = flattened_of(tp)
    keys: list[str] = []
    for name, (annotation, _) in fields.items():
        keys += list(fields_of(annotation) or {}) if name == flat else [name]
    return keys


class _Spot:
    """Where an error's location points: the user-facing key, its field, the parent type."""

    def __init__(self, root: type[BaseModel], loc: tuple[int | str, ...]) -> None:
        self.parts: list[str] = []
        self.parent: Any = root
        self.slot: Slot | None = None
        tp: Any = root
        i = 0
        while i < len(loc):
            fields = fields_of(tp)
            name = loc[i]
            if fields is None or not isinstance(name, str) or name not in fields:
                break
            if name != flattened_of(tp):
                self.parts.append(name)
            self.parent, self.slot = tp, fields[name]
            tp = fields[name][0]
            i += 1
        self.rest = loc[i:]

    @property
    def key(self) -> str:
        return ".".join(self.parts)


def _lookup(raw: Any, parts: Sequence[str]) -> tuple[bool, Any]:
    node = raw
    for part in parts:
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def suggest(key: str, allowed: Sequence[str]) -> str:
    """`` Did you mean 'prefix.close'?`` for the last part of a dotted key, or ``""``."""
    prefix, _, last = key.rpartition(".")
    close = difflib.get_close_matches(last, list(allowed), n=1, cutoff=0.6)
    if not close:
        return ""
    return f" Did you mean {(prefix + '.' if prefix else '') + close[0]!r}?"


def unknown_key(key: str, allowed: Sequence[str]) -> ConfigError:
    return ConfigError(
        f"Unknown config key {key!r}.{suggest(key, allowed)} Allowed: {', '.join(allowed)}."
    )


def _message(err: Mapping[str, Any], root: type[BaseModel], raw: Any) -> tuple[str, str]:
    """``(key, message)`` of one pydantic error."""
    spot = _Spot(root, tuple(err["loc"]))
    kind = err["type"]
    if kind == "extra_forbidden":
        key = ".".join([*spot.parts, str(spot.rest[0])]) if spot.rest else spot.key
        return key, str(unknown_key(key, user_keys(spot.slot[0] if spot.slot else root)))
    annotation, info = spot.slot or (root, None)
    key, value = spot.key or "config", err.get("input")
    allowed = err["msg"] if kind == "allowed" else describe_field(annotation, info)
    base, meta = _unpack(annotation, info.metadata if info is not None else ())
    if spot.rest and typing.get_origin(base) is list and isinstance(spot.rest[0], int):
        item = typing.get_args(base)[0]  # an item of a plain list: name its index
        key, allowed, base = f"{key}[{spot.rest[0]}]", describe_type(item), _unpack(item)[0]
    elif spot.rest:  # inside a union or a mapping: report the whole value of the field
        found, whole = _lookup(raw, spot.parts)
        value = whole if found else value
    if kind == "missing":
        return key, f"{key} is required: {allowed}."
    if kind in ("value_error", "assertion_error"):
        return key, f"{key}: {err.get('ctx', {}).get('error', err['msg'])}"
    hint = ""
    if typing.get_origin(base) is Literal and isinstance(value, str):
        choices = [str(a) for a in typing.get_args(base)]
        close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
    return key, f"{key} must be {allowed}; got {value!r}.{hint}"


def config_error(exc: ValidationError, root: type[BaseModel], raw: Any = None) -> ConfigError:
    """One :class:`ConfigError` for every key ``exc`` complains about (first error per key).

    Args:
        exc: the error of ``root.model_validate(raw)``.
        root: the validated model class (``RunConfig``).
        raw: the validated input, to quote a whole value when the error is deep inside it.
    """
    messages: dict[str, str] = {}
    for err in exc.errors(include_url=False):
        key, message = _message(err, root, raw)
        messages.setdefault(key, message)
    lines = list(messages.values())
    if len(lines) == 1:
        return ConfigError(lines[0])
    return ConfigError(f"{len(lines)} config errors:\n  " + "\n  ".join(lines))
