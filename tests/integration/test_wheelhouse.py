"""Offline install: ``scripts/wheelhouse.py`` (``make wheelhouse``) into a fresh venv with no index.

Builds the wheelhouse once (module fixture), installs it into a new ``python -m venv`` with
``--no-index --find-links <wheelhouse> --require-hashes -r requirements.lock`` and pip's
configuration switched off (no local index, no find-links, no constraints, no ``PYTHONPATH``: only
the wheelhouse can supply a package), then runs the site's ``fedhealth-site preflight`` from that
venv. A lock with one altered hash must make pip refuse. Marked ``slow`` (about 2 minutes here).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "wheelhouse.py"
# the site runtime's own dependencies that must be in the lock (pyproject.toml), torch the CPU build
REQUIRED = ("fedhealth", "torch", "nvflare", "monai", "opacus", "tenseal", "pydicom", "xgboost")
LOCK_LINE = re.compile(r"^([a-z0-9][a-z0-9-]*)==(\S+) --hash=sha256:([0-9a-f]{64})$")


def offline_env() -> dict[str, str]:
    """The environment less pip's settings and ``PYTHONPATH``: pip reads no configuration file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "PYTHONPATH"}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def run(cmd: list, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=offline_env(), capture_output=True, text=True, timeout=timeout
    )


def pip_install(venv: Path, wheelhouse: Path, lock: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [venv / "bin" / "python", "-m", "pip", "install", "--no-index", "--find-links", wheelhouse]
    return run([*cmd, "--require-hashes", "-r", lock, *extra], cwd=venv.parent)


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheelhouse") / "wheelhouse"
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--out", out], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"wheelhouse: \d+ wheels, \d+ MiB in ", proc.stdout), proc.stdout
    return out


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheelhouse) -> Path:
    """A fresh venv with the wheelhouse installed offline."""
    path = tmp_path_factory.mktemp("site") / "venv"
    made = run([sys.executable, "-m", "venv", path], cwd=path.parent)
    assert made.returncode == 0, made.stderr
    proc = pip_install(path, wheelhouse, wheelhouse / "requirements.lock")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return path


def lock_entries(lock: Path) -> dict[str, tuple[str, str]]:
    entries = {}
    for line in lock.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        match = LOCK_LINE.match(line)
        assert match, f"malformed lock line: {line!r}"
        entries[match[1]] = (match[2], match[3])
    return entries


def test_lock_pins_every_wheel_with_its_hash(wheelhouse):
    import hashlib

    entries = lock_entries(wheelhouse / "requirements.lock")
    wheels = sorted(wheelhouse.glob("*.whl"))
    assert len(entries) == len(wheels) > 50  # the whole closure, one line per wheel
    for name in REQUIRED:
        assert name in entries, f"{name} missing from the lock"
    assert entries["torch"][0] == "2.13.0+cpu"
    assert entries["nvflare"][0] == "2.9.0"
    assert "fedhealth-tools" not in entries  # the consortium's tools are not shipped to sites
    fedhealth_wheel = next(wheelhouse.glob("fedhealth-0.1.0-*.whl"))
    assert hashlib.sha256(fedhealth_wheel.read_bytes()).hexdigest() == entries["fedhealth"][1]
    # the site runtime's modules exactly: no fedhealth_tools, no stale build leftovers
    with zipfile.ZipFile(fedhealth_wheel) as wheel:
        shipped = {n for n in wheel.namelist() if n.endswith(".py")}
    source = {p.relative_to(ROOT / "custom").as_posix() for p in (ROOT / "custom").rglob("*.py")}
    assert shipped == source
    assert any(n.startswith("fedhealth/onboarding/") for n in shipped)


def test_site_preflight_runs_from_the_offline_venv(venv, tmp_path):
    # fedhealth comes from the installed wheel, not the checkout; torch is the CPU build
    probe = (
        "import fedhealth, monai, nvflare, opacus, pydicom, tenseal, torch; "
        "print(fedhealth.__file__, torch.__version__, nvflare.__version__)"
    )
    proc = run([venv / "bin" / "python", "-c", probe], cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    location, torch_version, nvflare_version = proc.stdout.split()
    assert location.startswith(str(venv)), location
    assert (torch_version, nvflare_version) == ("2.13.0+cpu", "2.9.0")

    not_a_kit = tmp_path / "site-1"
    not_a_kit.mkdir()
    proc = run([venv / "bin" / "fedhealth-site", "preflight", not_a_kit], cwd=tmp_path, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        "site-1: NOT READY",
        f"  integrity  FAIL  {not_a_kit} is not a startup kit (no startup/ folder)",
    ]


def test_an_altered_hash_makes_pip_refuse(venv, wheelhouse, tmp_path):
    lock = (wheelhouse / "requirements.lock").read_text()
    good_hash = lock_entries(wheelhouse / "requirements.lock")["fedhealth"][1]
    bad_hash = ("0" if good_hash[0] != "0" else "1") + good_hash[1:]
    bad = tmp_path / "requirements.lock"
    bad.write_text(lock.replace(good_hash, bad_hash))
    # --ignore-installed: pip would otherwise accept the installed copy without reading any wheel
    args = ("--dry-run", "--ignore-installed")
    refused = pip_install(venv, wheelhouse, bad, *args)
    assert refused.returncode == 1, refused.stdout
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in refused.stderr, refused.stderr[-3000:]
    assert f"Expected sha256 {bad_hash}" in refused.stderr
    assert f"Got        {good_hash}" in refused.stderr
    # the control: the same command with the lock as written passes
    accepted = pip_install(venv, wheelhouse, wheelhouse / "requirements.lock", *args)
    assert accepted.returncode == 0, accepted.stderr[-3000:]
    assert "Would install" in accepted.stdout and "fedhealth-0.1.0" in accepted.stdout
