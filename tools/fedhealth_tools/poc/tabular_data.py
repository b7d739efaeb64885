"""The demo's data for task ``tabular``: each POC site's own export and mapping of the job's dataset.

``task_args["dataset"]`` names the dataset: ``heart_disease`` gives each hospital its rows in its own
dialect (:mod:`fedhealth_tools.data.heart_dialects`), ``indo_rct`` gives each site one trial centre
(:mod:`fedhealth_tools.data.indo_rct`). Each site gets ``<kit>/data/<dataset>/`` with
``train.csv``, ``test.csv`` and ``mapping.json``, and ``data_root`` ``data`` in its own settings.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from fedhealth.constants import HEART_DATASET_DIR, SITE_DATA_ROOT_KEY
from fedhealth_tools.data.heart_canonical import canonical_sites
from fedhealth_tools.data.heart_dialects import write_heart_dialect_site
from fedhealth_tools.data.indo_rct import DATASET_DIR as INDO_RCT_DIR
from fedhealth_tools.data.indo_rct import SITE_OF, load_indo_rct, write_indo_rct_site
from fedhealth_tools.poc.workspace import (
    LOCAL_DATA,
    PocError,
    PocLayout,
    sites_with_own_data,
    update_site_settings,
)

TABULAR_DATASETS = (HEART_DATASET_DIR, INDO_RCT_DIR)


def _writer(dataset: str) -> Callable[[Path, str], tuple[int, int]]:
    if dataset == HEART_DATASET_DIR:
        splits = canonical_sites()
        return lambda root, site: write_heart_dialect_site(root, site, splits=splits)
    if dataset == INDO_RCT_DIR:
        table = load_indo_rct()
        return lambda root, site: write_indo_rct_site(root, site, table=table)
    raise PocError(
        f"the job's tabular dataset is {dataset!r}; the demo has data for {', '.join(TABULAR_DATASETS)}. "
        "Run it with fedhealth up and each site's own data (--data SITE=PATH)."
    )


def write_tabular_data(
    layout: PocLayout, dataset: str, *, skip_own_data: bool = False
) -> dict[str, tuple[int, int]]:
    """Write each POC site's export of ``dataset`` into its kit; returns ``{site: (n_train, n_test)}``.

    Args:
        layout: the provisioned workspace.
        dataset: the job's ``task_args["dataset"]``.
        skip_own_data: leave a site whose settings name another data folder as it is (``fedhealth
            up``); without it such a site is an error (the demo's job needs the kit's export there).

    Raises:
        PocError: a dataset the demo has no data for, a site that is not one of the four POC
            hospitals, or (without ``skip_own_data``) a site that points at its own data.
    """
    write = _writer(dataset)
    unknown = [s for s in layout.sites if s not in SITE_OF]
    if unknown:
        raise PocError(f"project sites {unknown} are not the demo's sites {sorted(SITE_OF)}")
    own = sites_with_own_data(layout, needs=f"its {dataset} exports", allow=skip_own_data)
    sizes = {}
    for site in layout.sites:
        if site in own:
            continue
        kit = layout.kit(site)
        shutil.rmtree(kit / LOCAL_DATA / dataset, ignore_errors=True)  # no file of an earlier export stays
        sizes[site] = write(kit / LOCAL_DATA, site)
        update_site_settings(kit, **{SITE_DATA_ROOT_KEY: LOCAL_DATA})
    return sizes
