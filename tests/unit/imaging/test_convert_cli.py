"""``fedhealth convert-medmnist``: sites and manifest, counts by class name, warnings below min_images,
defaults in --help, and a missing file is a clear exit 1 that says how to get it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedhealth.imaging.site import CXR_DATASET_DIR
from fedhealth_tools.cli import main
from fedhealth_tools.imaging.converter import DEFAULT_MIN_IMAGES

ROOT = Path(__file__).resolve().parents[3]
# (option, the default --help must show)
DEFAULTS = [
    ("--alpha", "(default: 0.5)"),
    ("--seed", "(default: 0)"),
    ("--limit", "(default: None)"),
    ("--min-images", "(default: 10)"),
    ("--sites", "(default: ['cleveland', 'hungary', 'switzerland', 'va_long_beach'])"),
    ("--npz", "data/medmnist/pneumoniamnist.npz)"),
]


def test_convert_writes_sites_and_manifest_and_names_the_classes(
    pneumonia_npz: Path, tmp_path: Path, capsys
) -> None:
    argv = ["convert-medmnist", "--npz", str(pneumonia_npz), "--out", str(tmp_path), "--sites", "a", "b"]
    assert main([*argv, "--limit", "40", "--alpha", "1.0"]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert sorted(manifest["sites"]) == ["a", "b"]
    assert sum(len(list((tmp_path / s / CXR_DATASET_DIR / "test").glob("*.dcm"))) for s in "ab") == 40
    out = capsys.readouterr()
    for site in "ab":
        for split in ("train", "val", "test"):
            normal, pneumonia = manifest["sites"][site]["counts"][split]["per_class"]
            assert f"{site} {split}: normal {normal}, pneumonia {pneumonia}\n" in out.out
    assert "pneumoniamnist: DX, binary task, positive class 'pneumonia', 1 channel(s)" in out.out
    short = [
        (site, split, c["n"]) for site, i in manifest["sites"].items() for split, c in i["counts"].items()
    ]
    short = [(site, split, n) for site, split, n in short if n < 10]
    assert short  # 40 images per split over two skewed sites: some split falls below the default 10
    for site, split, n in short:
        assert f"warning: site {site} {split}: {n} image(s), fewer than min_images 10" in out.err
    assert out.err.count("warning: ") == len(short) == len(manifest["warnings"])


def test_no_warning_when_every_split_reaches_min_images(pneumonia_npz: Path, tmp_path: Path, capsys) -> None:
    argv = ["convert-medmnist", "--out", str(tmp_path), "--sites", "a", "b", "--limit", "40"]
    assert main([*argv, "--min-images", "1"]) == 0  # --npz left out: the bundled file
    out = capsys.readouterr()
    assert out.err == "" and json.loads((tmp_path / "manifest.json").read_text())["warnings"] == []


def test_help_shows_the_defaults(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["convert-medmnist", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for option, default in DEFAULTS:
        assert default in text.split(option, 2)[2].split(" --", 1)[0], option  # in the option's own entry


def test_the_min_images_default_is_the_cxr_jobs() -> None:
    spec = json.loads((ROOT / "job_specs" / "cxr.json").read_text())
    task_args = spec["defaults"]["client"]["executors"][0]["executor"]["args"]["task_args"]
    assert task_args["min_images"] == DEFAULT_MIN_IMAGES == 10  # the --help default above


def test_missing_file_exits_1_and_says_how_to_get_it(tmp_path: Path, capsys) -> None:
    assert main(["convert-medmnist", "--npz", str(tmp_path / "bloodmnist.npz"), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'bloodmnist.npz'} not found. Get bloodmnist.npz with the medmnist package" in err
    assert "files/bloodmnist.npz" in err and not list(tmp_path.iterdir())
