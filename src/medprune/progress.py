"""Progress of long loops: a tqdm bar on a terminal, plain periodic log lines everywhere else.

Every long loop of medprune (training epochs, evaluation, calibration passes, the compare grid)
goes through :func:`progress_bar` instead of calling ``tqdm`` directly::

    for batch in progress_bar(loader, desc="evaluate", unit="batches", enabled=progress):
        ...

    with progress_bar(total=len(loader), desc="train epoch 3/10", unit="batches") as bar:
        for batch in loader:
            ...
            bar.update(1)
            bar.set_postfix(loss=0.412)

What it shows, decided once when the bar is created:

- ``enabled=False``, or ``MEDPRUNE_PROGRESS=off``: nothing; the iterable passes through.
- Not global rank 0 under ``torchrun`` (``torch.distributed`` initialised with rank > 0, or the
  environment's ``RANK`` / ``LOCAL_RANK`` > 0): nothing, so a run does not repeat once per rank.
- The stream the bar writes to (``file``, by default ``sys.stderr``, where tqdm writes) is a
  terminal, or the code runs in a Jupyter kernel: a normal ``tqdm.auto`` bar. Nested bars get
  ``leave=None`` by default (tqdm keeps only the outermost bar on screen), so an outer bar is not
  re-drawn below every finished inner one. Note that "interactive" is about the bar's stream:
  ``medprune train > log.txt`` (stdout redirected, stderr still the terminal) shows a bar on the
  terminal and keeps ``log.txt`` clean; ``> log.txt 2>&1``, CI and SLURM get log lines.
- Otherwise (not a terminal): no tqdm at all. Plain lines, each on its own line and never a
  carriage return, at most every ``MEDPRUNE_PROGRESS_INTERVAL`` seconds (default 30) and one
  final line when the loop ends::

      train epoch 3/10: 120/480 batches (25%), 14.2 s elapsed, ~42 s left, loss=0.412
      train epoch 3/10: done, 480/480 batches (100%) in 56.1 s, loss=0.390

  Nested loops each write their own lines. The lines are INFO records of the logger
  ``medprune.progress`` (its level defaults to INFO, so they show with the CLI's default logging
  and with any ``logging.basicConfig()``; set that logger's level to WARNING to hide them); when
  no logging handler is configured at all they are written to the stream directly.

``MEDPRUNE_PROGRESS=bar`` or ``=log`` forces one style (``auto``, the default, decides as above).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal, Protocol, TextIO, TypeVar

from medprune.errors import ConfigError

__all__ = ["ProgressBar", "progress_bar", "progress_mode"]

logger = logging.getLogger(__name__)
if logger.level == logging.NOTSET:  # progress lines are asked for (progress=True): show at INFO
    logger.setLevel(logging.INFO)

T = TypeVar("T")
Mode = Literal["bar", "log", "off"]
MODES = ("auto", "bar", "log", "off")
DEFAULT_INTERVAL_S = 30.0
_now = time.monotonic  # the clock of log mode (tests replace it)


class ProgressBar(Protocol):
    """The subset of the tqdm API that medprune's loops use (tqdm bars satisfy it)."""

    def __iter__(self) -> Iterator[Any]: ...

    def update(self, n: float = 1) -> Any: ...

    def set_postfix(self, ordered_dict: Mapping[str, Any] | None = None, **kwargs: Any) -> Any: ...

    def set_postfix_str(self, s: str = "") -> Any: ...

    def set_description(self, desc: str | None = None) -> Any: ...

    def close(self) -> Any: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> Any: ...


def progress_bar(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    enabled: bool = True,
    unit: str = "it",
    leave: bool | None = None,
    initial: int = 0,
    file: TextIO | None = None,
) -> ProgressBar:
    """A progress display for a loop: tqdm bar, periodic log lines, or nothing (module docstring).

    Args:
        iterable: iterated through (``total`` defaults to its ``len`` when it has one); None to
            drive the bar with :meth:`update`.
        total: expected number of steps (None: unknown, no percentage or time left).
        desc: what the loop does, e.g. ``"train epoch 3/10"``.
        enabled: False shows nothing (the CLI's ``--no-progress`` / config ``progress: false``).
        unit: what one step is, plural, e.g. ``"batches"``.
        leave: keep the bar on screen when done (tqdm's meaning; None: only the outermost bar).
            Log mode always writes a final line.
        initial: steps already done (a resumed grid).
        file: the stream the bar writes to and whose ``isatty()`` decides the style (default
            ``sys.stderr`` at call time).

    Returns:
        An object with the tqdm methods of :class:`ProgressBar`; also a context manager.

    Raises:
        ConfigError: ``MEDPRUNE_PROGRESS`` or ``MEDPRUNE_PROGRESS_INTERVAL`` holds a bad value.
    """
    stream = file if file is not None else sys.stderr
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    mode = progress_mode(enabled=enabled, file=stream)
    if mode == "bar":
        from tqdm.auto import tqdm

        return tqdm(  # type: ignore[no-any-return]
            iterable, total=total, desc=desc, unit=unit, leave=leave, initial=initial, file=stream
        )
    if mode == "log":
        return _LogProgress(
            iterable, total=total, desc=desc, unit=unit, initial=initial, file=stream,
            interval_s=_interval_s(),
        )  # fmt: skip
    return _Silent(iterable)


def progress_mode(*, enabled: bool = True, file: TextIO | None = None) -> Mode:
    """Which style :func:`progress_bar` uses here: ``"bar"``, ``"log"`` or ``"off"``.

    Args:
        enabled: False gives ``"off"``.
        file: the bar's stream (default ``sys.stderr``).

    Raises:
        ConfigError: ``MEDPRUNE_PROGRESS`` is not one of auto, bar, log, off.
    """
    choice = os.environ.get("MEDPRUNE_PROGRESS", "auto").strip().lower() or "auto"
    if choice not in MODES:
        raise ConfigError(
            f"MEDPRUNE_PROGRESS must be one of {', '.join(MODES)}; got "
            f"{os.environ['MEDPRUNE_PROGRESS']!r}. Unset it to decide from the terminal."
        )
    if not enabled or choice == "off" or _global_rank() != 0:
        return "off"
    if choice != "auto":
        return choice  # type: ignore[return-value]
    stream = file if file is not None else sys.stderr
    return "bar" if _is_terminal(stream) or _in_notebook() else "log"


def _global_rank() -> int:
    """Global rank of this process: the process group's, else ``$RANK``, else ``$LOCAL_RANK``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    for name in ("RANK", "LOCAL_RANK"):
        value = os.environ.get(name, "").strip()
        if value:
            try:
                return int(value)
            except ValueError:
                return 0  # not a launcher's rank; do not hide progress over it
    return 0


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def _in_notebook() -> bool:
    """True inside a Jupyter kernel, where tqdm.auto draws a widget (stderr is no TTY there)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except AttributeError:
        return False
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _interval_s() -> float:
    text = os.environ.get("MEDPRUNE_PROGRESS_INTERVAL", "").strip()
    if not text:
        return DEFAULT_INTERVAL_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also catches nan
        raise ConfigError(
            f"MEDPRUNE_PROGRESS_INTERVAL must be a number of seconds >= 0; got {text!r}. "
            f"Unset it for the default ({DEFAULT_INTERVAL_S:g} s)."
        )
    return value


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class _Silent:
    """Shows nothing: iteration passes through, every method is a no-op."""

    def __init__(self, iterable: Iterable[Any] | None) -> None:
        self.iterable = iterable
        self.n = 0

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("this progress bar has no iterable; call update() instead")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:  # also when the loop breaks or raises (the generator is closed)
            self.close()

    def update(self, n: float = 1) -> None:
        self.n += n  # type: ignore[assignment]

    def set_postfix(self, ordered_dict: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        pass

    def set_postfix_str(self, s: str = "") -> None:
        pass

    def set_description(self, desc: str | None = None) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _LogProgress(_Silent):
    """Writes a plain line at most every ``interval_s`` seconds and one when closed."""

    def __init__(
        self,
        iterable: Iterable[Any] | None,
        *,
        total: int | None,
        desc: str,
        unit: str,
        initial: int,
        file: TextIO,
        interval_s: float,
    ) -> None:
        super().__init__(iterable)
        self.total, self.desc, self.unit, self.file = total, desc, unit, file
        self.n = self.initial = initial
        self.interval_s = interval_s
        self.postfix = ""
        self.start = self._last = _now()
        self.closed = False

    def update(self, n: float = 1) -> None:
        self.n += n  # type: ignore[assignment]
        now = _now()
        if now - self._last >= self.interval_s:
            self._last = now
            self._emit(self._line(now, done=False))

    def set_postfix(self, ordered_dict: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        values = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={_format_value(v)}" for k, v in values.items())

    def set_postfix_str(self, s: str = "") -> None:
        self.postfix = str(s)

    def set_description(self, desc: str | None = None) -> None:
        self.desc = desc or ""

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.n > self.initial or self.total == 0:
            self._emit(self._line(_now(), done=True))

    def _line(self, now: float, *, done: bool) -> str:
        elapsed = now - self.start
        count = f"{self.n:g}/{self.total} {self.unit}" if self.total else f"{self.n:g} {self.unit}"
        if self.total:
            count += f" ({100.0 * self.n / self.total:.0f}%)"
        if done:
            parts = [f"done, {count} in {elapsed:.1f} s"]
        else:
            parts = [count, f"{elapsed:.1f} s elapsed"]
            steps = self.n - self.initial
            if self.total and steps > 0 and self.n < self.total:
                parts.append(f"~{elapsed / steps * (self.total - self.n):.0f} s left")
        if self.postfix:
            parts.append(self.postfix)
        line = ", ".join(parts)
        return f"{self.desc}: {line}" if self.desc else line

    def _emit(self, line: str) -> None:
        line = line.replace("\r", " ").replace("\n", " ")
        if logger.hasHandlers():
            logger.info(line)
            return
        try:  # no logging configured at all (a plain script): write it like tqdm would
            self.file.write(line + "\n")
            self.file.flush()
        except (ValueError, OSError):  # a closed stream must not break training
            pass
