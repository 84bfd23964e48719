"""Exceptions raised by medprune.

Every exception subclasses :class:`MedpruneError` and the matching builtin, so callers can catch
either. Messages say what was wrong, the value received, and what is allowed or how to fix it.
"""

from __future__ import annotations


class MedpruneError(Exception):
    """Base class of every error medprune raises on purpose."""


class ConfigError(MedpruneError, ValueError):
    """A configuration value, argument or name is invalid."""


class DataError(MedpruneError, ValueError):
    """A dataset file or folder is missing, corrupt or inconsistent."""


class ShapeMismatchError(MedpruneError, ValueError):
    """A tensor or array has a shape other than the one required."""


class UnsupportedOpError(MedpruneError, RuntimeError):
    """The graph engine met an operation it cannot prune through."""


class TraceError(MedpruneError, RuntimeError):
    """``torch.export`` could not trace the model."""


class CheckpointError(MedpruneError, RuntimeError):
    """A checkpoint is missing, corrupt or does not match the model."""
