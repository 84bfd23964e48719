"""``medprune inspect`` on a model given by file path: groups, pins, and the last line."""

from __future__ import annotations

import re

from medprune.cli.__main__ import main

FACTORY = """
import torch.nn as nn


def make(width=8):
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 2),
    )
"""

LAST = re.compile(
    r"^equivalence: max_abs_diff=(\S+) groups=(\d+) pinned=(\d+) macs_before=(\d+) macs_after=(\d+)$"
)


def test_inspect_file_factory(tmp_path, capsys):
    path = tmp_path / "mynet.py"
    path.write_text(FACTORY)
    code = main(
        ["inspect", "--model", f"{path}:make", "--model-kwargs", '{"width": 16}',
         "--input-shape", "1,3,16,16"]
    )  # fmt: skip
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    match = LAST.match(out[-1])
    assert match, out[-1]
    diff, groups, pinned, before, after = match.groups()
    assert float(diff) <= 1e-9
    assert int(groups) == 2 and int(pinned) >= 1
    assert 0 < int(after) < 0.5 * int(before)
    assert any("pinned: model input" in line for line in out)


def test_inspect_bad_kwargs(capsys):
    code = main(
        ["inspect", "--model", "tiny_cnn", "--model-kwargs", "[1]", "--input-shape", "1,1,32,32"]
    )
    assert code == 2
    assert "--model-kwargs must be a JSON object" in capsys.readouterr().err


GATED = """
import torch
import torch.nn as nn


class Gated(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate = nn.Conv2d(1, 16, 3, padding=1)
        self.fixed = nn.Conv2d(1, 8, 3, padding=1)
        self.head = nn.Conv2d(12, 2, 1)

    def forward(self, x):
        a, b = self.gate(x).split(self.gate.out_channels // 2, dim=1)  # derived: prunable
        u, v = torch.split(self.fixed(x), [4, 4], dim=1)  # literal: pinned
        return self.head(torch.cat([a * torch.sigmoid(b), u + v], dim=1))


def make():
    return Gated()
"""


def test_inspect_reports_what_the_probe_decided(tmp_path, capsys):
    path = tmp_path / "gated.py"
    path.write_text(GATED)
    assert main(["inspect", "--model", f"{path}:make", "--input-shape", "1,1,16,16"]) == 0
    out = capsys.readouterr().out
    assert "probed on a pruned copy (2):" in out
    assert re.search(r"split@<root> \(equal_split\): sizes follow the channel count", out)
    assert re.search(r"split_with_sizes@<root> \(equal_split\): fixed: pinned", out)
    diff = float(LAST.match(out.strip().splitlines()[-1]).group(1))
    assert diff <= 1e-9
