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


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.2", "nan"])
def test_out_of_range_target_latency_names_the_flag(value: str) -> None:
    from medprune.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--target-latency must be a fraction in \(0, 1\)"):
        build_config(_parse(f"--target-latency={value}"))


def test_latency_device_and_refresh_flags() -> None:
    cfg = build_config(
        _parse("--target-latency", "0.3", "--latency-device", "auto", "--latency-refresh")
    )
    assert (cfg.prune.latency_device, cfg.prune.latency_refresh) == ("auto", True)
    parser, _ = build_parser()
    from medprune.cli.compare import run  # noqa: F401 - the compare verb takes the same flags

    args = parser.parse_args(["compare", "--target-kind", "latency", "--latency-device", "cpu"])
    assert args.latency_device == "cpu"
