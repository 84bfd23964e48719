"""Type checks and did-you-mean messages of the run config (keys are dotted paths)."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Literal

import yaml

from medprune.errors import ConfigError


def type_ok(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin is Literal:
        return value in typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return isinstance(value, list) and all(type_ok(v, item) for v in value)
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    return isinstance(value, tp)


def describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return f"a list of {describe(item)}"
    if origin is dict or tp is dict:
        return "a mapping"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def coerce(value: Any, tp: Any) -> Any:
    """Small friendly coercions: ``"0.3,0.5"`` or ``0.5`` -> list, ints -> floats."""
    origin = typing.get_origin(tp)
    if origin is list and not isinstance(value, list):
        if isinstance(value, str):
            value = [yaml.safe_load(v.strip()) for v in value.split(",") if v.strip()]
        elif isinstance(value, (int, float)):
            value = [value]
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(tp) or (Any,)
        if item is float:
            value = [float(v) if type_ok(v, float) else v for v in value]
        if item is str:
            value = [str(v) if isinstance(v, (int, float)) else v for v in value]
    if tp is float and type_ok(value, float):
        value = float(value)
    return value


def suggest(key: str, allowed: list[str]) -> str:
    prefix, _, last = key.rpartition(".")
    close = difflib.get_close_matches(last, allowed, n=1, cutoff=0.6)
    if not close:
        return ""
    return f" Did you mean {(prefix + '.' if prefix else '') + close[0]!r}?"


def unknown_key(key: str, allowed: list[str]) -> ConfigError:
    return ConfigError(
        f"Unknown config key {key!r}.{suggest(key, allowed)} Allowed: {', '.join(allowed)}."
    )


def check_value(key: str, value: Any, tp: Any) -> Any:
    value = coerce(value, tp)
    if not type_ok(value, tp):
        raise ConfigError(f"{key} must be {describe(tp)}; got {value!r}.")
    return value
