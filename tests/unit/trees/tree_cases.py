"""Three small tabular sites aligned for trees (site-3 never measures cholesterol), for the tree tests."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import xgboost as xgb
from ehr_cases import DICTIONARY, site_rows, write_site_folder

from fedhealth import constants as C
from fedhealth.ehr.alignment import AlignmentPolicy, align
from fedhealth.tasks.base import SiteContext
from fedhealth.tasks.registry import build_task
from fedhealth.tasks.tabular import TabularSite, TabularTask

DATASET = "heart_mini"
TREES = AlignmentPolicy(imputation="none", indicators=False)
PARAMS = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 2, "nthread": 1}


def tree_federation(tmp_path: Path) -> tuple[TabularTask, dict[str, TabularSite], dict]:
    """Three sites (site-3 never measures cholesterol) aligned for trees."""
    task = build_task("tabular", {"dictionary": copy.deepcopy(DICTIONARY), "dataset": DATASET})
    sites = {}
    for seed, name in enumerate(("site-1", "site-2", "site-3"), start=1):
        root = tmp_path / name
        write_site_folder(
            root / "data" / DATASET,
            site_rows(40, seed, chol=seed != 3, first_id=1000 * seed),
            site_rows(20, seed + 50, chol=seed != 3, first_id=1000 * seed + 500),
        )
        sites[name] = task.load_site(SiteContext(name, root, {}, tmp_path / "run" / name))
    profiles = {n: s.extra_tasks()[C.TASK_EHR_PROFILE]({"min_cell": 5}) for n, s in sites.items()}
    schema = align(profiles, task.data_dictionary, TREES)
    for site in sites.values():
        site.set_schema(schema)
    return task, sites, schema  # type: ignore[return-value]


def pooled_booster(sites: list[TabularSite], rounds: int = 5) -> xgb.Booster:
    x = np.concatenate([s.arrays("train")[0] for s in sites])
    y = np.concatenate([s.arrays("train")[1] for s in sites])
    return xgb.train(PARAMS, xgb.DMatrix(x, label=y, missing=np.nan), rounds)
