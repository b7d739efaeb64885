"""A synthetic federation of many sites cut from the four heart-disease hospitals (FLARE-free).

For scale tests and benchmarks only: the 740 usable UCI patients are pooled (train and test kept
apart, FLamby's split), shuffled with a seed, and dealt to ``n_sites`` sites. A site whose share
is smaller than ``min_train`` / ``min_test`` rows is topped up with further rows drawn from the
pool (so with many sites, sites share patients: the point is cost, not accuracy). ``min_train``
defaults to 16, the sites' default floor (one batch of 16 distinct patients per update): a smaller
synthetic site would decline every task.

Each site's ``heart_disease/`` folder holds ``train.csv``, ``test.csv`` (the canonical columns, named
as the heart data dictionary names its features, with the UCI codes its ``codes`` accept, e.g. ``2.0``)
and the ``mapping.json`` that reads them for task ``tabular`` (:data:`SYNTHETIC_MAPPING`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from fedhealth.data.site_data import write_site
from fedhealth.ehr.mapping import MAPPING_FILE
from fedhealth_tools.data.heart_source import load_heart_sites

# The synthetic sites' mapping: every column already has the dictionary's feature name (so none is
# listed but cholesterol, where FLamby's 0 means "not measured"); the label column is ``target``.
SYNTHETIC_MAPPING = {
    "missing_tokens": ["", "nan", "NA", "?"],
    "target": {"column": "target", "positive": ["1"], "negative": ["0"]},
    "columns": {"chol": {"feature": "chol", "missing_values": ["0", "0.0"]}},
}


def site_names(n_sites: int) -> list[str]:
    """``site-001`` ... : zero-padded so that names sort in site order."""
    if n_sites < 1:
        raise ValueError(f"n_sites must be at least 1, got {n_sites}.")
    width = max(3, len(str(n_sites)))
    return [f"site-{i + 1:0{width}d}" for i in range(n_sites)]


def _deal(pool: pd.DataFrame, n_sites: int, minimum: int, rng: np.random.Generator) -> list[pd.DataFrame]:
    order = rng.permutation(len(pool))
    shares = np.array_split(order, n_sites)
    out = []
    for share in shares:
        if len(share) < minimum:
            rest = np.setdiff1d(np.arange(len(pool)), share)
            share = np.concatenate([share, rng.choice(rest, minimum - len(share), replace=False)])
        out.append(pool.iloc[np.sort(share)].reset_index(drop=True))
    return out


def synthetic_split(
    n_sites: int, *, seed: int = 0, min_train: int = 16, min_test: int = 4, csv_path: Path | None = None
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """``{site: (train, test)}`` for ``n_sites`` synthetic sites (UCI-coded columns plus the label)."""
    if min_train < 1 or min_test < 1:
        raise ValueError(f"min_train and min_test must be at least 1, got {min_train} and {min_test}.")
    names = site_names(n_sites)
    hospitals = load_heart_sites(csv_path).values()
    train = pd.concat([h.train for h in hospitals], ignore_index=True)
    test = pd.concat([h.test for h in hospitals], ignore_index=True)
    rng = np.random.default_rng(seed)
    trains = _deal(train, n_sites, min_train, rng)
    tests = _deal(test, n_sites, min_test, rng)
    return {name: (tr, te) for name, tr, te in zip(names, trains, tests, strict=True)}


def write_synthetic_sites(root: Path, n_sites: int, *, seed: int = 0) -> dict[str, Path]:
    """Write each synthetic site's files and ``mapping.json`` under ``root/<site>``; returns its folders."""
    folders = {}
    for name, (train, test) in synthetic_split(n_sites, seed=seed).items():
        folders[name] = Path(root) / name
        folder = write_site(folders[name], train, test)
        (folder / MAPPING_FILE).write_text(json.dumps(SYNTHETIC_MAPPING, indent=2) + "\n")
    return folders
