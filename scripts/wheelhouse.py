"""``make wheelhouse``: every wheel a site needs, for a host with no route to a package index.

Builds a folder (``wheelhouse/`` by default, git-ignored) with the site runtime's wheel (the
distribution ``fedhealth`` from the top-level ``pyproject.toml``; the consortium's tools in
``tools/`` are not needed at a site) and a wheel of every dependency, torch first pinned to the CPU
build as ``make setup`` does, then writes ``requirements.lock`` beside them: one
``name==version --hash=sha256:...`` line per wheel. A site installs with::

    python3 -m venv /opt/fedhealth/venv
    /opt/fedhealth/venv/bin/pip install --no-index --find-links wheelhouse \\
        --require-hashes -r wheelhouse/requirements.lock

By default the versions are those of the environment running this script (``make setup``'s
``.venv``, where the tests ran): its ``pip freeze`` is passed to pip as constraints, so a site gets
what was tested (a fresh resolve might take e.g. a newer pandas major). ``--fresh`` resolves anew.

``--cuda URL`` makes a GPU site's wheelhouse (``make wheelhouse-gpu``, into ``wheelhouse-gpu/``):
torch comes from the CUDA index at ``URL`` (e.g. ``https://download.pytorch.org/whl/cu128``), with
the ``nvidia-*`` wheels that carry CUDA's user-space libraries; the other versions stay those of
this environment (its CPU torch pin is left out). Not run on the machine that wrote this.

The wheels are for the interpreter and platform this runs on (here CPython 3.11, Linux x86_64):
build the wheelhouse with the same Python minor version and architecture the sites run.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parent.parent
# Same pins as the Makefile's setup: the CPU torch build, then the site runtime (no dev extras).
TORCH = "torch==2.13.0"
LOCK_NAME = "requirements.lock"


def installed_pins(python: str = sys.executable) -> list[str]:
    """``name==version`` of every distribution installed in ``python``'s environment (not editable ones)."""
    cmd = [python, "-m", "pip", "freeze", "--exclude-editable"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return [line for line in proc.stdout.splitlines() if "==" in line and not line.startswith("#")]


def clean_copy(project: Path, dest: Path) -> Path:
    """What the ``fedhealth`` wheel is built from: ``pyproject.toml``, ``README.md`` and ``custom/``.

    Copied without caches and build leftovers: setuptools would otherwise package a stale
    ``build/lib`` (a module deleted from ``custom/`` would still ship).
    """
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(project / name, dest / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(project / "custom", dest / "custom", ignore=skip)
    return dest


def build(
    out: Path,
    *,
    project: Path = ROOT,
    python: str = sys.executable,
    pins: list[str] | None = None,
    cuda_index: str | None = None,
) -> list[Path]:
    """Wheels of ``torch`` and of ``project`` with all its dependencies into ``out``; the wheel paths.

    ``pip wheel`` resolves the whole set in one go (so the lock is consistent), copies wheels it
    finds on an index or local disk and builds a wheel for anything that only ships an sdist.
    ``pins`` (``name==version`` lines) constrain the versions. Files already in ``out`` are reused.
    ``cuda_index``: the index of torch's CUDA build, added to those pip searches; the ``torch*``
    and ``nvidia-*`` pins are dropped so that build can be chosen (``2.13.0+cu128`` sorts above
    ``2.13.0+cpu``, so pip takes it where both are found).
    Raises ``RuntimeError`` naming pip's exit code on failure.
    """
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = clean_copy(project, Path(tmp) / "src")
        cmd = [python, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(out), TORCH, str(source)]
        if cuda_index:
            cmd += ["--extra-index-url", cuda_index]
            pins = [
                p
                for p in pins or []
                if not canonicalize_name(p.split("==")[0]).startswith(("torch", "nvidia-"))
            ]
        if pins:
            constraints = Path(tmp) / "constraints.txt"
            constraints.write_text("\n".join(pins) + "\n")
            cmd += ["--constraint", str(constraints)]
        proc = subprocess.run(cmd, cwd=project)
    if proc.returncode != 0:
        raise RuntimeError(f"pip wheel exited {proc.returncode}: {' '.join(cmd)}")
    extra = sorted(p.name for p in out.iterdir() if p.is_file() and p.suffix not in (".whl", ".lock"))
    if extra:
        raise RuntimeError(f"{out} holds files that are not wheels: {', '.join(extra)}")
    return sorted(out.glob("*.whl"))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def lock_lines(wheels: list[Path]) -> list[str]:
    """``name==version --hash=sha256:...`` per wheel, sorted by name.

    Raises ``ValueError`` when two wheels carry the same distribution (the folder holds leftovers
    of an older build: delete it and build again).
    """
    seen: dict[str, Path] = {}
    lines = []
    for wheel in sorted(wheels, key=lambda p: canonicalize_name(parse_wheel_filename(p.name)[0])):
        name, version, _, _ = parse_wheel_filename(wheel.name)
        if name in seen:
            raise ValueError(f"two wheels for {name}: {seen[name].name} and {wheel.name}; rebuild from empty")
        seen[name] = wheel
        lines.append(f"{name}=={version} --hash=sha256:{sha256(wheel)}")
    return lines


def write_lock(out: Path, wheels: list[Path]) -> Path:
    """Write ``out/requirements.lock`` for ``wheels`` and return its path."""
    lock = out / LOCK_NAME
    header = [
        "# fedhealth site runtime and every dependency: `make wheelhouse` (scripts/wheelhouse.py).",
        f"# pip install --no-index --find-links {out.name} --require-hashes -r {out.name}/{LOCK_NAME}",
    ]
    lock.write_text("\n".join(header + lock_lines(wheels)) + "\n")
    return lock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "wheelhouse", help="folder for the wheels")
    parser.add_argument("--clean", action="store_true", help="empty the folder first")
    parser.add_argument(
        "--fresh", action="store_true", help="resolve anew instead of the versions installed here"
    )
    parser.add_argument("--cuda", metavar="URL", help="torch's CUDA build from this index (GPU sites)")
    args = parser.parse_args(argv)
    if args.clean and args.out.exists():
        shutil.rmtree(args.out)
    try:
        pins = None if args.fresh else installed_pins()
        wheels = build(args.out, pins=pins, cuda_index=args.cuda)
        lock = write_lock(args.out, wheels)
    except (RuntimeError, ValueError) as exc:
        print(f"wheelhouse: {exc}", file=sys.stderr)
        return 1
    size = sum(w.stat().st_size for w in wheels) / 2**20
    print(f"wheelhouse: {len(wheels)} wheels, {size:.0f} MiB in {args.out}; lock: {lock}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
