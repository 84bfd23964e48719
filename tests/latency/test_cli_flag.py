"""``medprune prune --target-latency F [--latency-runtime ...]`` parses into the config."""

from __future__ import annotations

import pytest

from medprune.cli.__main__ import build_parser
from medprune.cli.prune import build_config


def _parse(*argv: str):
    parser, _ = build_parser()
    return parser.parse_args(["prune", *argv])


def test_target_latency_flag_sets_config() -> None:
    args = _parse("--target-latency", "0.4", "--latency-runtime", "onnxruntime")
    cfg = build_config(args)
    assert (cfg.prune.target, cfg.prune.amount, cfg.prune.latency_runtime) == (
        "latency", 0.4, "onnxruntime",
    )  # fmt: skip


def test_target_latency_is_exclusive_with_macs(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        _parse("--target-latency", "0.4", "--target-macs", "0.5")
    assert e.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_unknown_latency_runtime_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit):
        _parse("--target-latency", "0.4", "--latency-runtime", "tourch")
    assert "invalid choice: 'tourch'" in capsys.readouterr().err
