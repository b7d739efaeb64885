"""Each POC site's own chest X-ray DICOM folder, converted from MedMNIST, and its data setting.

The imaging twin of :func:`fedhealth_tools.poc.workspace.write_heart_data`: the converter writes each
site's DICOM files straight into that site's kit (``<kit>/data/cxr/...``) and the site's
``local/fedhealth_site.json`` names its data folder; no job names a path.
"""

from __future__ import annotations

from pathlib import Path

from fedhealth.constants import SITE_DATA_ROOT_KEY
from fedhealth_tools.imaging.converter import convert_medmnist
from fedhealth_tools.poc.workspace import PocLayout, update_site_settings


def write_cxr_data(
    layout: PocLayout, npz: Path, *, alpha: float = 0.5, seed: int = 0, limit: int | None = None
) -> dict:
    """Convert ``npz`` into every site of ``layout`` (non-IID); returns the converter's manifest."""
    roots = {site: layout.kit(site) / "data" for site in layout.sites}
    manifest = convert_medmnist(
        npz,
        layout.root / "cxr_manifest",
        sites=list(layout.sites),
        alpha=alpha,
        seed=seed,
        limit=limit,
        site_roots=roots,
    )
    for site in layout.sites:
        update_site_settings(layout.kit(site), **{SITE_DATA_ROOT_KEY: "data"})
    return manifest
