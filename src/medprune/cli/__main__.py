"""Entry point of the ``medprune`` command: discovers verb modules and dispatches.

Exit codes: 0 success, 2 usage or configuration error, 1 runtime failure.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import pkgutil
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import medprune.cli as cli_package
from medprune._version import __version__
from medprune.cli._common import FlagDeprecation
from medprune.errors import ConfigError, DataError, MedpruneError


class _Parser(argparse.ArgumentParser):
    """The top-level parser; ``verb_parsers`` holds each verb's sub-parser (for its errors)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.verb_parsers: dict[str, argparse.ArgumentParser] = {}


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
    parser = _Parser(
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
        parser.verb_parsers[name] = verb_parser
    return parser, verbs


def unrecognized_message(parser: argparse.ArgumentParser, extra: Sequence[str]) -> str:
    """``unrecognized arguments: --epoch 3; did you mean --epochs?`` (the hint when a visible
    flag of ``parser`` is close to an unknown one)."""
    flags = [
        flag
        for action in parser._actions
        if action.help is not argparse.SUPPRESS
        for flag in action.option_strings
        if flag.startswith("--")
    ]
    hints = []
    for token in extra:
        if token.startswith("--"):
            close = difflib.get_close_matches(token.partition("=")[0], flags, n=1, cutoff=0.6)
            hints += [c for c in close if c not in hints]
    message = f"unrecognized arguments: {' '.join(extra)}"
    if hints:
        message += f"; did you mean {' or '.join(hints)}?"
    return message


def _parse(parser: _Parser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``: an unknown flag is reported with the verb's usage and a did-you-mean; a
    renamed flag's :class:`FlagDeprecation` becomes one plain ``warning:`` line on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FlagDeprecation)
        args, extra = parser.parse_known_args(argv)
    for w in caught:
        if issubclass(w.category, FlagDeprecation):
            print(f"medprune {args.verb}: warning: {w.message}", file=sys.stderr)
        else:  # not ours: as Python would have shown it
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if extra:
        verb_parser = parser.verb_parsers.get(args.verb or "", parser)
        verb_parser.error(unrecognized_message(verb_parser, extra))  # exits with status 2
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser, verbs = build_parser()
    args = _parse(parser, argv)
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
