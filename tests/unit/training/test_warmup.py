"""The warm-up pays torch's first-optimizer imports in a fresh process and touches no model."""

from __future__ import annotations

import subprocess
import sys

from fedhealth.training.warmup import warm_up_in_background

PROBE = """
import sys, torch
before = "torch._dynamo" in sys.modules
from fedhealth.training.warmup import warm_up_torch
warm_up_torch()
print(before, "torch._dynamo" in sys.modules)
"""


def test_warm_up_imports_what_the_first_optimizer_needs() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.split() == ["False", "True"]


def test_background_warm_up_finishes() -> None:
    thread = warm_up_in_background()
    thread.join(timeout=120)
    assert not thread.is_alive() and thread.daemon and thread.name == "fedhealth-warm-up"
