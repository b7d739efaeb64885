"""The site runtime is its own package: it imports nothing from the consortium's tools.

What a hospital host or the server imports to run jobs (``custom/fedhealth``, distribution
``fedhealth``) must not reach provisioning, POC, the CLI, simulation or benchmarks
(``tools/fedhealth_tools``, distribution ``fedhealth-tools``), and the runtime's wheel must not carry
them: a job that names a component can only reach code a hospital installed on purpose.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from flower_modules import FLOWER_PYTHON, imports, needs_flower

ROOT = Path(__file__).resolve().parents[3]
RUNTIME = ROOT / "custom" / "fedhealth"
TOOLS_PACKAGE = "fedhealth_tools"
# Subpackages of the tools; none of these names may exist in the runtime.
TOOLS_ONLY = ("poc", "provision", "simulation", "cli")


def _runtime_modules() -> list[str]:
    names = []
    for path in sorted(RUNTIME.rglob("*.py")):
        parts = path.relative_to(RUNTIME.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_runtime_has_many_modules() -> None:
    assert len(_runtime_modules()) > 80  # the walk below sees the whole package


@pytest.mark.parametrize("path", sorted(RUNTIME.rglob("*.py")), ids=lambda p: str(p.relative_to(RUNTIME)))
def test_no_runtime_module_imports_the_tools(path: Path) -> None:
    bad = sorted(m for m in imports(path) if m == TOOLS_PACKAGE or m.startswith(TOOLS_PACKAGE + "."))
    assert bad == [], f"{path.relative_to(ROOT)} imports the tools: {bad}"


def test_tools_subpackages_are_not_in_the_runtime() -> None:
    assert [
        name for name in TOOLS_ONLY if (RUNTIME / name).exists() or (RUNTIME / f"{name}.py").exists()
    ] == []


# (case id, interpreter, modules): the kit's environment imports all but the Flower modules, which
# need flwr and are imported by .venv-flower's Python.
ENVIRONMENTS = [
    ("kit", Path(sys.executable), lambda: [m for m in _runtime_modules() if m not in needs_flower()]),
    ("flower", FLOWER_PYTHON, lambda: sorted(needs_flower())),
]


@pytest.mark.parametrize(
    ("python", "modules"), [e[1:] for e in ENVIRONMENTS], ids=[e[0] for e in ENVIRONMENTS]
)
def test_every_runtime_module_imports_without_the_tools(python: Path, modules) -> None:
    """In a fresh interpreter where ``fedhealth_tools`` cannot be imported at all."""
    if not python.is_file():
        pytest.skip(f"{python} is missing (make .venv-flower/.installed)")
    names = modules()
    assert names
    code = (
        "import importlib, sys\n"
        f"sys.modules[{TOOLS_PACKAGE!r}] = None\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('fedhealth_tools.')))\n"
    )
    proc = subprocess.run(
        [python, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(ROOT / "custom"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_runtime_wheel_carries_only_the_runtime(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            ".",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("fedhealth-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"fedhealth"}
    assert not [n for n in names if n.split("/")[1:2] and n.split("/")[1] in TOOLS_ONLY + ("cli.py",)]
    assert "fedhealth/executors/site_executor.py" in names
    fabs = {f"fedhealth/flower/apps/{app}/pyproject.toml" for app in ("heart", "cxr", "heart_flower")}
    assert fabs <= set(names)  # the Flower apps' FAB folders
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "fedhealth-site = fedhealth.onboarding.cli:main" in scripts
    assert "fedhealth_tools" not in scripts
