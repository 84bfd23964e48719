"""On-disk cache of measured latency tables (one small JSON file per entry).

An entry is keyed by the SHA-256 of its canonical JSON key: the layer signature (type, kernel,
stride, padding, dilation, groups, input shape, widths, table mode) or the whole model's
structure and input shape, plus the runtime fingerprint (runtime name, device type, CPU model
string / CUDA device name, threads, torch / onnxruntime versions). Any change of those gives
another file, so a different machine, thread count, runtime, shape or library version is
measured afresh. Files are written atomically (temp file + ``os.replace``); a file that does not
parse, whose stored key differs from the expected one, or whose value is damaged, is ignored with
a warning and rewritten by the next measurement. A folder that cannot be written (read-only, a
file in its place) warns once and the run goes on without storing anything. ``refresh=True``
(``prune.latency_refresh: true``, ``--latency-refresh``) measures everything again and overwrites
what is stored.

Location: ``cache_dir`` if given, else ``$MEDPRUNE_CACHE_DIR/latency``, else
``~/.cache/medprune/latency``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from medprune.typing import PathLike

T = TypeVar("T")

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    """``$MEDPRUNE_CACHE_DIR/latency`` or ``~/.cache/medprune/latency``."""
    root = os.environ.get("MEDPRUNE_CACHE_DIR")
    if root:
        return Path(root).expanduser() / "latency"
    return Path("~/.cache/medprune/latency").expanduser()


def _canonical(key: dict[str, Any]) -> str:
    return json.dumps({"format": FORMAT_VERSION, **key}, sort_keys=True, default=str)


class LatencyCache:
    """JSON files ``<dir>/<sha256>.json`` holding ``{"key": ..., "value": ...}``.

    Args:
        cache_dir: folder (created on the first write); None = :func:`default_cache_dir`.
        refresh: never answer a lookup (measure again), but store the new measurements.

    Attributes:
        hits, misses: lookups answered / not answered since construction.
        writable: False once a write failed (the folder is then left alone).
    """

    def __init__(self, cache_dir: PathLike | None = None, *, refresh: bool = False) -> None:
        self.dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.refresh = refresh
        self.hits = 0
        self.misses = 0
        self.writable = True

    def path_for(self, key: dict[str, Any]) -> Path:
        digest = hashlib.sha256(_canonical(key).encode()).hexdigest()[:32]
        return self.dir / f"{digest}.json"

    def get(self, key: dict[str, Any], parse: Callable[[Any], T] = lambda v: v) -> T | None:
        """The stored value for ``key`` passed through ``parse`` (which raises ``ValueError``,
        ``TypeError`` or ``KeyError`` on a damaged value), or None: missing, corrupt or
        mismatched file, or ``refresh``."""
        path = self.path_for(key)
        if self.refresh or not path.is_file():
            self.misses += 1
            return None
        try:
            data = json.loads(path.read_text())
            if data.get("key") != json.loads(_canonical(key)):
                raise ValueError("stored key differs")
            value = parse(data["value"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            warnings.warn(
                f"ignoring corrupt latency cache file {path} ({e}); it will be re-measured "
                "and rewritten.",
                stacklevel=2,
            )
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put(self, key: dict[str, Any], value: Any) -> Path | None:
        """Store ``value`` under ``key`` atomically; returns the file, or None when the folder
        cannot be written (warned once; the measurement is still used for this run)."""
        if not self.writable:
            return None
        path = self.path_for(key)
        text = json.dumps({"key": json.loads(_canonical(key)), "value": value})
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        except OSError as e:
            self.writable = False
            warnings.warn(
                f"cannot write the latency cache in {self.dir} ({e}); the tables are measured "
                "for this run only. Point $MEDPRUNE_CACHE_DIR (or cache_dir=) at a writable "
                "folder to keep them.",
                stacklevel=2,
            )
            return None
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def clear(self) -> int:
        """Delete every cache file in the folder; returns how many were removed."""
        if not self.dir.is_dir():
            return 0
        n = 0
        for p in self.dir.glob("*.json"):
            p.unlink(missing_ok=True)
            n += 1
        return n


def clear_cache(cache_dir: PathLike | None = None) -> int:
    """Delete the latency cache (``cache_dir`` or the default); returns the files removed."""
    return LatencyCache(cache_dir).clear()
