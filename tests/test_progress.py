"""medprune.progress: tqdm bar on a terminal, bounded plain lines elsewhere, silent off rank 0."""

from __future__ import annotations

import contextlib
import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from tqdm.std import tqdm

import medprune.progress as progress_module
from medprune.cli.__main__ import main
from medprune.errors import ConfigError
from medprune.progress import progress_bar, progress_mode


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MEDPRUNE_PROGRESS", "MEDPRUNE_PROGRESS_INTERVAL", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


@contextlib.contextmanager
def fresh_logging() -> Iterator[None]:
    """The root logger as in a fresh process: no handlers (pytest's are put back afterwards).

    Used inside the test body: pytest attaches its capture handlers at the start of each phase.
    """
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers.clear()
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        root.handlers.extend(saved)
        root.setLevel(level)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A fake clock that advances 1 s each time it is read."""
    now = [0.0]

    def tick() -> float:
        value = now[0]
        now[0] += 1.0
        return value

    monkeypatch.setattr(progress_module, "_now", tick)
    return now


def test_not_a_terminal_writes_bounded_plain_lines(
    monkeypatch: pytest.MonkeyPatch, clock: list[float]
) -> None:
    monkeypatch.setenv("MEDPRUNE_PROGRESS_INTERVAL", "10")
    stream = io.StringIO()
    with fresh_logging():  # no handler: the lines are written to the stream
        with progress_bar(total=1000, desc="train epoch 3/10", unit="batches", file=stream) as bar:
            bar.set_postfix(loss=0.5)
            for _ in range(1000):
                bar.update(1)
    text = stream.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and len(lines) == 101  # one every 10 (fake) seconds, plus the last
    assert (
        lines[0] == "train epoch 3/10: 10/1000 batches (1%), 10.0 s elapsed, ~990 s left, loss=0.5"
    )
    assert lines[-1] == "train epoch 3/10: done, 1000/1000 batches (100%) in 1001.0 s, loss=0.5"


def test_iterating_passes_items_and_ends_with_one_line() -> None:
    stream = io.StringIO()
    with fresh_logging():
        items = list(progress_bar(range(7), desc="evaluate", unit="batches", file=stream))
    assert items == list(range(7))
    assert re.fullmatch(r"evaluate: done, 7/7 batches \(100%\) in \d+\.\d s\n", stream.getvalue())


def test_nested_loops_each_write_their_own_lines() -> None:
    stream = io.StringIO()
    with fresh_logging():
        for run in progress_bar(range(2), desc="compare", unit="runs", file=stream):
            inner = progress_bar(total=3, desc=f"run {run}", unit="batches", file=stream)
            for _ in range(3):
                inner.update()
            inner.set_description(f"run {run} finished")
            inner.close()
            inner.close()  # a second close writes nothing
    heads = [line.split(":")[0] for line in stream.getvalue().splitlines()]
    assert heads == ["run 0 finished", "run 1 finished", "compare"]


def test_log_lines_go_through_the_medprune_progress_logger(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)  # as the CLI's default: progress lines still show
    try:
        for _ in progress_bar(range(3), desc="calibrate", unit="batches"):
            pass
    finally:
        root.setLevel(level)
    records = [r for r in caplog.records if r.name == "medprune.progress"]
    assert [r.levelno for r in records] == [logging.INFO]
    assert records[0].getMessage().startswith("calibrate: done, 3/3 batches (100%)")
    assert capsys.readouterr().err == ""  # no tqdm frames on the captured (non-TTY) stderr


def test_terminal_gets_a_tqdm_bar() -> None:
    stream = _Terminal()
    bar = progress_bar(total=5, desc="train epoch 1/1", unit="batches", file=stream)
    assert isinstance(bar, tqdm) and bar.leave is None  # kept on screen only as the outer bar
    for _ in range(5):
        bar.update(1)
    bar.close()
    assert "\r" in stream.getvalue() and "5/5" in stream.getvalue()


@pytest.mark.parametrize("env", [{"RANK": "1"}, {"LOCAL_RANK": "1"}])
def test_other_ranks_write_nothing(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for stream in (io.StringIO(), _Terminal()):
        with fresh_logging(), progress_bar(range(4), desc="train", file=stream) as bar:
            assert list(bar) == [0, 1, 2, 3]
            bar.set_postfix(loss=1.0)
        assert stream.getvalue() == ""
    monkeypatch.setenv("RANK", "0")  # rank 0 of a torchrun job does show progress
    assert progress_mode(file=io.StringIO()) == "log"


def test_disabled_and_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = _Terminal()
    assert list(progress_bar(range(3), enabled=False, file=stream)) == [0, 1, 2]
    assert stream.getvalue() == ""
    assert progress_mode(file=_Terminal()) == "bar" and progress_mode(file=io.StringIO()) == "log"
    monkeypatch.setenv("MEDPRUNE_PROGRESS", "log")
    assert progress_mode(file=_Terminal()) == "log"
    monkeypatch.setenv("MEDPRUNE_PROGRESS", "BAR")
    assert isinstance(progress_bar(total=1, file=io.StringIO()), tqdm)
    assert progress_mode(enabled=False, file=_Terminal()) == "off"  # progress=False always wins
    monkeypatch.setenv("MEDPRUNE_PROGRESS", "off")
    assert progress_mode(file=_Terminal()) == "off"
    monkeypatch.setenv("MEDPRUNE_PROGRESS", "fancy")
    with pytest.raises(
        ConfigError, match="MEDPRUNE_PROGRESS must be one of auto, bar, log, off; got 'fancy'"
    ):
        progress_bar(range(2))
    monkeypatch.setenv("MEDPRUNE_PROGRESS", "log")
    monkeypatch.setenv("MEDPRUNE_PROGRESS_INTERVAL", "-1")
    with pytest.raises(
        ConfigError, match="MEDPRUNE_PROGRESS_INTERVAL must be a number of seconds >= 0; got '-1'"
    ):
        progress_bar(range(2))


def test_medprune_train_in_a_log_file_gets_plain_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The user's steps: ``medprune train ... 2> log.txt`` (stderr not a terminal), 1 epoch."""
    small = [
        "--set", "data.n_train=32", "--set", "data.n_val=16", "--set", "data.n_test=16",
        "--set", "data.image_size=16", "--set", "measure.onnx=false", "--set", "measure.repeats=1",
        "--set", "train.batch_size=8", "--model", "tiny_cnn", "--epochs", "1",
    ]  # fmt: skip
    with fresh_logging():  # the CLI's logging.basicConfig then writes to the captured stderr
        assert main(["train", "--out", str(tmp_path / "run"), *small]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [x for x in err.splitlines() if "medprune.progress" in x]
    assert lines, err
    assert re.fullmatch(
        r"INFO medprune\.progress: train epoch 1/1: done, 4/4 batches \(100%\) in \d+\.\d s, "
        r"loss=\d\.\d{4}",
        lines[0],
    ), lines
    with fresh_logging():
        assert main(["train", "--out", str(tmp_path / "quiet"), *small, "--no-progress"]) == 0
    assert "medprune.progress" not in capsys.readouterr().err
