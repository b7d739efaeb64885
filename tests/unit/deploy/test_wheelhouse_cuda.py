"""``scripts/wheelhouse.py --cuda``: the pip command a GPU site's wheelhouse is built with.

pip itself is not run (that needs torch's CUDA index); ``subprocess.run`` is replaced by a recorder.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PINS = [
    "numpy==2.3.5",
    "torch==2.13.0+cpu",
    "torchvision==0.28.0+cpu",
    "nvidia-nccl-cu12==2.28.9",
    "nvflare==2.9.0",
]


def _wheelhouse():
    spec = importlib.util.spec_from_file_location(
        "fedhealth_wheelhouse_script", ROOT / "scripts" / "wheelhouse.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("cuda", "constrained"),
    [
        (None, PINS),
        ("https://download.pytorch.org/whl/cu128", ["numpy==2.3.5", "nvflare==2.9.0"]),
    ],
    ids=["cpu", "cuda"],
)
def test_the_cuda_index_is_searched_and_the_cpu_torch_pins_are_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cuda: str | None, constrained: list[str]
) -> None:
    wheelhouse = _wheelhouse()
    seen = {}

    def fake_run(cmd, **kwargs):
        seen["cmd"] = cmd
        constraints = cmd[cmd.index("--constraint") + 1]
        seen["constraints"] = Path(constraints).read_text().split()
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(wheelhouse.subprocess, "run", fake_run)
    assert wheelhouse.build(tmp_path / "out", pins=PINS, cuda_index=cuda) == []
    assert seen["cmd"][seen["cmd"].index("--wheel-dir") + 2] == "torch==2.13.0"
    assert ("--extra-index-url" in seen["cmd"]) is (cuda is not None)
    if cuda:
        assert seen["cmd"][seen["cmd"].index("--extra-index-url") + 1] == cuda
    assert seen["constraints"] == constrained
