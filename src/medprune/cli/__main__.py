"""Entry point of the ``medprune`` command: discovers verb modules and dispatches.

Exit codes: 0 success, 2 usage or configuration error, 1 runtime failure.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

import medprune.cli as cli_package
from medprune._version import __version__
from medprune.errors import ConfigError, DataError, MedpruneError


def _verb_modules() -> dict[str, ModuleType]:
    verbs = {}
    for info in pkgutil.iter_modules(cli_package.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"medprune.cli.{info.name}")
        if hasattr(module, "run") and hasattr(module, "add_arguments"):
            verbs[info.name.replace("_", "-")] = module
    return verbs


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    """The top-level parser with one sub-command per verb module."""
    parser = argparse.ArgumentParser(
        prog="medprune",
        allow_abbrev=False,
        description="Structural pruning of medical-imaging CNNs that protects the rare class.",
    )
    parser.add_argument("--version", action="version", version=f"medprune {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs = _verb_modules()
    for name, module in sorted(verbs.items()):
        verb_parser = sub.add_parser(
            name,
            help=getattr(module, "HELP", ""),
            description=getattr(module, "HELP", ""),
            allow_abbrev=False,  # `--epoch 3` is an error, not `--epochs 3`
        )
        module.add_arguments(verb_parser)
    return parser, verbs


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser, verbs = build_parser()
    args = parser.parse_args(argv)
    if not args.verb:
        parser.print_help()
        return 2
    try:
        return int(verbs[args.verb].run(args) or 0)
    except (ConfigError, DataError) as e:
        print(f"medprune {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except MedpruneError as e:
        print(f"medprune {args.verb}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"medprune {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
