"""``medprune config``: check a run config and print it resolved (every key, defaults filled in),
or print the reference of every key (``--schema``, the content of ``docs/config.md``)."""

from __future__ import annotations

import argparse

from medprune.cli._common import add_config_file_arguments, echo

HELP = "Check a run config and print it resolved, or print every config key (--schema)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--schema",
        action="store_true",
        help="print every config key with its type, default and meaning (Markdown)",
    )
    add_config_file_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import yaml

    from medprune.cli._common import config_from_args
    from medprune.config import config_to_dict, schema_markdown

    if args.schema:
        echo(schema_markdown().rstrip("\n"))
        return 0
    from medprune.pipeline import check_config

    config = config_from_args(args)
    check_config(config)  # what train / prune / compare check before any work
    echo(yaml.safe_dump(config_to_dict(config), sort_keys=False).rstrip("\n"))
    return 0
