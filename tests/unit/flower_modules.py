"""Which kit modules need Flower (``flwr``, the ``flower`` extra, ``.venv-flower``) to import.

A module needs it when it imports ``flwr``, or imports a kit module that does (found from the
source, no import). The layout tests import every other module in the kit's environment and these
with ``.venv-flower``'s Python.
"""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "custom" / "fedhealth"
FLOWER_PYTHON = ROOT / ".venv-flower" / "bin" / "python"


def _name(path: Path) -> str:
    parts = path.relative_to(RUNTIME.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The modules ``path`` imports (``import x``, ``from x import y``), from its source."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def needs_flower() -> set[str]:
    """The kit modules that import ``flwr``, directly or through another kit module."""
    graph = {_name(p): imports(p) for p in RUNTIME.rglob("*.py")}
    needing = {m for m, names in graph.items() if any(n == "flwr" or n.startswith("flwr.") for n in names)}
    while True:
        more = {m for m, names in graph.items() if m not in needing and names & needing}
        if not more:
            return needing
        needing |= more


def flower_jobs() -> list[str]:
    """The shipped jobs whose site executor is the kit's Flower executor."""
    found = []
    for client in sorted((ROOT / "jobs").glob("*/app*/config/config_fed_client.json")):
        if "fedhealth.executors.flower_site_executor.FlowerSiteExecutor" in client.read_text():
            found.append(client.parents[2].name)
    return sorted(set(found))


FLOWER_JOBS = flower_jobs()


def run_in_flower(script: str, *args: object) -> dict:
    """Run ``script`` with ``.venv-flower``'s Python (kit and tools on the path); its last line as JSON."""
    proc = subprocess.run(
        [FLOWER_PYTHON, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": f"{ROOT / 'custom'}:{ROOT / 'tools'}", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
