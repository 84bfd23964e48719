"""``medprune report``: rebuild report.md / report.html from a folder's results.jsonl."""

from __future__ import annotations

import argparse
from pathlib import Path

from medprune.cli._common import command_line, echo

HELP = "Rebuild report.md and report.html of a compare / prune folder from its JSON records."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "folder", type=Path, help="folder with results.jsonl (compare) or run.json (prune)"
    )
    parser.add_argument("--title", default=None, help="page title")


def run(args: argparse.Namespace) -> int:
    import json

    from medprune.errors import ConfigError
    from medprune.report import read_jsonl, write_report

    folder = args.folder
    records = read_jsonl(folder / "results.jsonl")
    command = None
    if not records and (folder / "run.json").is_file():
        run_json = json.loads((folder / "run.json").read_text())
        records = [r for r in (run_json.get("base"), run_json.get("pruned")) if r]
        records += list(run_json.get("latency") or [])  # interleaved timings, if any
        command = run_json.get("command")
    if not records:
        raise ConfigError(f"{folder} has no results.jsonl or run.json with records to report.")
    config = folder / "config.resolved.yaml"
    paths = write_report(
        folder,
        records,
        title=args.title or f"medprune report: {folder.name}",
        command=command or command_line("report", args),
        config_yaml=config.read_text() if config.is_file() else None,
    )
    echo(f"wrote {paths.markdown} and {paths.html}")
    return 0
