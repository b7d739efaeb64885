"""``fedhealth convert-medmnist``: writes the sites and the manifest; a missing file is a clear exit 1."""

from __future__ import annotations

import json
from pathlib import Path

from fedhealth.imaging.site import CXR_DATASET_DIR
from fedhealth_tools.cli import main


def test_convert_writes_sites_and_manifest(pneumonia_npz: Path, tmp_path: Path, capsys) -> None:
    code = main(
        [
            "convert-medmnist",
            "--npz",
            str(pneumonia_npz),
            "--out",
            str(tmp_path),
            "--sites",
            "a",
            "b",
            "--limit",
            "40",
            "--alpha",
            "1.0",
        ]
    )
    assert code == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert sorted(manifest["sites"]) == ["a", "b"]
    assert sum(len(list((tmp_path / s / CXR_DATASET_DIR / "test").glob("*.dcm"))) for s in "ab") == 40
    assert "binary task, 1 channel(s)" in capsys.readouterr().out


def test_missing_file_exits_1(tmp_path: Path, capsys) -> None:
    assert main(["convert-medmnist", "--npz", str(tmp_path / "nope.npz"), "--out", str(tmp_path)]) == 1
    assert "nope.npz not found" in capsys.readouterr().out
