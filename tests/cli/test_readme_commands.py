"""Every ``medprune ...`` line of README.md parses, and the files it names exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from medprune.cli.__main__ import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("medprune ")]


COMMANDS = _readme_commands()


def test_readme_lists_commands():
    assert len(COMMANDS) >= 5


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_parses_and_its_files_exist(command):
    argv = shlex.split(command)[1:]
    parser, _ = build_parser()
    parser.parse_args(argv)  # exits (SystemExit) on an unknown verb or flag
    for arg in argv:
        if arg.startswith("examples/"):
            assert (ROOT / arg).is_file(), f"README names {arg}, which does not exist"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    (snippet,) = re.findall(r"## Python\n```python\n(.*?)```", text, flags=re.S)
    monkeypatch.chdir(tmp_path)  # it writes plan.json
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    summary = namespace["result"].summary
    assert abs(summary["macs_removed"] - 0.5) <= 0.02
    assert (tmp_path / "plan.json").is_file()
