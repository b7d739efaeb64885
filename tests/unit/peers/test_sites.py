"""Site folders for the peer runs: FLARE-style site folders whose own setting names their data."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedhealth.constants import HEART_DATASET_DIR, HEART_SITES
from fedhealth.data.site_data import resolve_data_root
from fedhealth_tools.peers.sites import heart_sites, sites_file, write_sites

# (sites asked, names)
CASES = [(4, list(HEART_SITES)), (6, [f"site-00{i}" for i in range(1, 7)])]


@pytest.mark.parametrize(("n", "names"), CASES, ids=["hospitals", "shards"])
def test_each_site_folder_names_its_own_data(tmp_path: Path, n: int, names: list[str]) -> None:
    folders = heart_sites(tmp_path / "sites", n)
    assert list(folders) == names
    for folder in folders.values():
        data = resolve_data_root(folder) / HEART_DATASET_DIR
        assert sorted(p.name for p in data.iterdir()) == ["mapping.json", "test.csv", "train.csv"]
    listed = sites_file(folders, tmp_path / "sites.json").read_text()
    assert all(str(f.resolve()) in listed for f in folders.values())


def test_the_cxr_federation_has_four_sites_and_tasks_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="4 DICOM sites, not 3"):
        write_sites("cxr", 3, tmp_path)
    with pytest.raises(ValueError, match="task must be one of"):
        write_sites("retina", 4, tmp_path)
