"""A small data dictionary, a site mapping and real CSV files for the EHR tests.

Shared by ``tests/unit/ehr`` and ``tests/unit/tasks/test_tabular_task.py``: every table is written to a
file and read back with :func:`~fedhealth.ehr.harmonize.read_table`, as a site reads its export.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np

from fedhealth.ehr.dictionary import DataDictionary
from fedhealth.ehr.harmonize import Harmonized, harmonize, read_table
from fedhealth.ehr.mapping import SiteMapping

CP = ["typical_angina", "atypical_angina", "non_anginal", "asymptomatic"]
DICTIONARY = {
    "name": "heart_mini",
    "version": 1,
    "target": {"name": "heart_disease", "description": "num > 0"},
    "features": [
        {"name": "age", "kind": "numeric", "unit": "year", "range": [18, 100], "required": True},
        {"name": "sex", "kind": "binary", "description": "1 = male"},
        {
            "name": "cp",
            "kind": "categorical",
            "categories": CP,
            "codes": {c: [str(i + 1)] for i, c in enumerate(CP)},
        },
        {
            "name": "chol",
            "kind": "numeric",
            "unit": "mg/dL",
            "range": [80, 700],
            "molar_mass": "386.65 g/mol",
        },
    ],
}
MAPPING = {
    "id_column": "patient_id",
    "missing_tokens": ["?", "", "NA", "-9"],
    "target": {"column": "num", "positive": ["1", "2", "3", "4"], "negative": ["0"]},
    "columns": {},
}
HEADER = ["patient_id", "age", "sex", "cp", "chol", "num"]


def dictionary(**changes: object) -> DataDictionary:
    """The test dictionary, with top-level keys replaced by ``changes``."""
    return DataDictionary.from_dict({**copy.deepcopy(DICTIONARY), **changes})


def mapping(**changes: object) -> SiteMapping:
    """The test mapping, with top-level keys replaced by ``changes``."""
    return SiteMapping.from_dict({**copy.deepcopy(MAPPING), **changes})


def write_csv(path: Path, header: list[str], rows: list[list[object]], *, encoding: str = "utf-8") -> Path:
    """A CSV file as a hospital exports it (no quoting of plain values)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(",".join(str(v) for v in row) for row in [header, *rows]) + "\n"
    path.write_bytes(text.encode(encoding))
    return path


def harmonized(
    tmp_path: Path,
    rows: list[list[object]],
    *,
    header: list[str] = HEADER,
    site_mapping: SiteMapping | None = None,
    data_dictionary: DataDictionary | None = None,
    label: str = "heart_mini/train.csv",
) -> Harmonized:
    """``rows`` written to a file, read back and harmonized."""
    path = write_csv(tmp_path / "train.csv", header, rows)
    return harmonize(
        read_table(path, label=label),
        data_dictionary or dictionary(),
        site_mapping or mapping(),
        label=label,
    )


def site_rows(
    n: int,
    seed: int,
    *,
    chol: bool = True,
    rare: int = 0,
    first_id: int = 0,
) -> list[list[object]]:
    """``n`` plausible patients; ``chol=False``: cholesterol never measured; ``rare``: that many non_anginal.

    Chest pain is drawn from the three other categories, so ``non_anginal`` appears only ``rare`` times.
    """
    rng = np.random.default_rng(seed)
    common = ["typical_angina", "atypical_angina", "asymptomatic"]
    rows = []
    for i in range(n):
        cp = "non_anginal" if i < rare else common[i % 3]
        rows.append(
            [
                f"P{first_id + i:05d}",
                int(rng.integers(30, 80)),
                int(rng.integers(0, 2)),
                cp,
                round(float(rng.normal(240, 40)), 1) if chol else "NA",
                int(rng.integers(0, 2)),
            ]
        )
    return rows


def write_site_folder(
    folder: Path, train: list[list[object]], test: list[list[object]], site_mapping: dict | None = None
) -> Path:
    """``<folder>/train.csv``, ``test.csv`` and ``mapping.json``, as a hospital keeps them."""
    write_csv(folder / "train.csv", HEADER, train)
    write_csv(folder / "test.csv", HEADER, test)
    (folder / "mapping.json").write_text(json.dumps(site_mapping or MAPPING))
    return folder


def three_sites(tmp_path: Path) -> dict[str, Harmonized]:
    """Three hospitals of 40 patients: only ``site-a`` has 3 non_anginal; ``site-c`` never measures chol."""
    specs = {
        "site-a": {"seed": 1, "rare": 3},
        "site-b": {"seed": 2},
        "site-c": {"seed": 3, "chol": False},
    }
    return {
        name: harmonized(tmp_path / name, site_rows(40, first_id=100 * i, **spec), label=f"{name}/train.csv")
        for i, (name, spec) in enumerate(specs.items())
    }
