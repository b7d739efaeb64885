"""The decoded cache: a second load decodes nothing, a change misses, provenance maps source hashes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fedhealth.imaging.cache import PROVENANCE_FILE, DecodedCache, file_sha256
from fedhealth.imaging.labels import LabelSpec
from fedhealth.imaging.site import CXR_DATASET_DIR, PipelineSettings, load_site_images


def test_second_load_hits_the_cache_with_identical_inputs(tmp_path: Path, make_site) -> None:
    root = make_site(tmp_path / "site", n=8)
    settings = PipelineSettings(size=16)
    first = load_site_images(root, LabelSpec("binary"), settings, cache_root=tmp_path / "cache")
    second = load_site_images(root, LabelSpec("binary"), settings, cache_root=tmp_path / "cache")
    for split in first:
        assert first[split].cache_hits == 0 and second[split].cache_hits == 8
        np.testing.assert_array_equal(first[split].x, second[split].x)
        np.testing.assert_array_equal(first[split].y, second[split].y)
    cache = DecodedCache(tmp_path / "cache", settings.cache_settings())
    record = json.loads((tmp_path / "cache" / cache.digest / PROVENANCE_FILE).read_text())
    assert record["settings"] == {
        "size": 16,
        "channels": 1,
        "resample": "area",
        "intensity": "zscore",
        "decode": {"apply_voi": True, "voi_index": 0},
    }
    some_file = sorted((root / CXR_DATASET_DIR / "train").glob("*.dcm"))[0]
    item = record["items"][file_sha256(some_file)]
    assert item["shape"] == [1, 16, 16] and (tmp_path / "cache" / item["item"]).is_file()
    assert len(record["items"]) == 24


def test_changed_setting_or_file_is_a_miss(tmp_path: Path, make_site) -> None:
    root = make_site(tmp_path / "site", n=4)
    load_site_images(root, LabelSpec("binary"), PipelineSettings(size=16), cache_root=tmp_path / "cache")
    other = load_site_images(
        root, LabelSpec("binary"), PipelineSettings(size=20), cache_root=tmp_path / "cache"
    )
    assert other["train"].cache_hits == 0 and other["train"].x.shape == (4, 1, 20, 20)
    path = sorted((root / CXR_DATASET_DIR / "train").glob("*.dcm"))[0]
    path.write_bytes(path.read_bytes() + b"\0\0")  # a trailing change: a new hash
    again = load_site_images(
        root, LabelSpec("binary"), PipelineSettings(size=16), cache_root=tmp_path / "cache"
    )
    assert again["train"].cache_hits == 3 and again["val"].cache_hits == 4
