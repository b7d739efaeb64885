"""A site-installed package, for real: a ``.dist-info`` folder with ``entry_points.txt`` on ``sys.path``.

``importlib.metadata`` finds it exactly as it finds a ``pip install``-ed package, so the registries'
entry-point discovery runs unchanged; nothing is patched.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def install_package(
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    dist: str,
    entry_points: dict[str, dict[str, str]],
    modules: dict[str, str] | None = None,
) -> Path:
    """Write package ``dist`` (its modules and entry points) under ``root`` and put ``root`` on ``sys.path``.

    Args:
        root: a fresh folder (one per test: ``importlib.metadata`` caches a folder's listing).
        monkeypatch: pytest's, so the path goes again after the test.
        dist: the distribution's name.
        entry_points: group -> name -> ``"module:Class"``.
        modules: module name -> source, written next to the ``.dist-info`` folder.
    """
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = []
    for group, names in entry_points.items():
        lines.append(f"[{group}]")
        lines.extend(f"{name} = {value}" for name, value in names.items())
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in (modules or {}).items():
        (root / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(root))
    return root
