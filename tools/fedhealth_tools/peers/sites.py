"""Site folders for the peer runs: each a FLARE-style site folder whose own setting names its data.

Every site gets ``<root>/<site>/local/fedhealth_site.json`` with ``data_root`` ``data`` and its data
under ``<root>/<site>/data``, the layout a FLARE site's workspace has, so the kit's FLARE simulator and
the Flower apps read the very same files:

* heart, 4 sites: the four hospitals' exports, each in its own dialect with its own mapping
  (:func:`fedhealth_tools.data.heart_dialects.write_heart_dialect_site`, as the POC writes them);
* heart, any other number: the synthetic shards of the kit's 100-site figures (data under
  ``<root>/data/<site>``)
  (:func:`fedhealth_tools.data.synthetic_sites.write_synthetic_sites`, as
  :func:`fedhealth_tools.simulation.run.run_simulation` and ``bench-scale`` use them);
* CXR: the bundled PneumoniaMNIST converted to DICOM for four non-IID sites (Dirichlet α 0.5,
  seed 0, as :func:`fedhealth_tools.poc.cxr_data.write_cxr_data` converts it for the POC).
"""

from __future__ import annotations

import json
from pathlib import Path

from fedhealth.constants import HEART_SITES, SITE_CONFIG_FILE, SITE_DATA_ROOT_KEY
from fedhealth_tools.data.heart_canonical import canonical_sites
from fedhealth_tools.data.heart_dialects import write_heart_dialect_site
from fedhealth_tools.data.synthetic_sites import write_synthetic_sites

JOBS = {"heart": "heart_fedprox", "cxr": "cxr_fedavg"}  # task -> the kit's job
CXR_SITES = HEART_SITES  # the POC's four site names (provision/poc.yml) hold the CXR folders too
CXR_ALPHA, CXR_SEED = 0.5, 0  # write_cxr_data's defaults: what the POC demo converts


def _settings(site_root: Path, data_root: str = "data") -> None:
    local = site_root / "local"
    local.mkdir(parents=True, exist_ok=True)
    (local / SITE_CONFIG_FILE).write_text(json.dumps({SITE_DATA_ROOT_KEY: data_root}, indent=2) + "\n")


def heart_sites(root: Path, n_sites: int = 4, *, seed: int = 0) -> dict[str, Path]:
    """``{site: site folder}`` for heart: the four hospitals (``n_sites`` 4) or synthetic shards."""
    root = Path(root)
    if n_sites == len(HEART_SITES):
        splits = canonical_sites()
        folders = {site: root / site for site in HEART_SITES}
        for site, folder in folders.items():
            write_heart_dialect_site(folder / "data", site, splits=splits)
            _settings(folder)
        return folders
    folders = {}
    for site, data in write_synthetic_sites(root / "data", n_sites, seed=seed).items():
        folders[site] = root / "sites" / site
        _settings(folders[site], str(data.resolve()))
    return folders


def cxr_sites(root: Path) -> dict[str, Path]:
    """``{site: site folder}`` for the four DICOM sites (the bundled PneumoniaMNIST, converted)."""
    from fedhealth_tools.imaging.converter import convert_medmnist, medmnist_file

    root = Path(root)
    folders = {site: root / site for site in CXR_SITES}
    convert_medmnist(
        medmnist_file("pneumoniamnist"),
        root / "_manifest",
        sites=list(CXR_SITES),
        alpha=CXR_ALPHA,
        seed=CXR_SEED,
        site_roots={site: folder / "data" for site, folder in folders.items()},
    )
    for folder in folders.values():
        _settings(folder)
    return folders


def sites_file(folders: dict[str, Path], path: Path) -> Path:
    """The simulation's ``sites-file``: ``[{"name", "root"}]``, partition ``i`` is entry ``i``."""
    entries = [{"name": name, "root": str(Path(folder).resolve())} for name, folder in folders.items()]
    Path(path).write_text(json.dumps(entries, indent=1) + "\n")
    return Path(path)


def write_sites(task: str, sites: int, root: Path) -> dict[str, Path]:
    """The sites' folders for ``task`` (heart: 4 hospitals or synthetic shards; cxr: 4 DICOM sites)."""
    if task == "heart":
        return heart_sites(root, sites)
    if task == "cxr":
        if sites != len(CXR_SITES):
            raise ValueError(f"the CXR federation has {len(CXR_SITES)} DICOM sites, not {sites}.")
        return cxr_sites(root)
    raise ValueError(f"task must be one of {sorted(JOBS)}, not {task!r}.")
