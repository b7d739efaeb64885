"""The four hospitals' heart exports: each file is in its dialect, and its mapping reads it back exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedhealth.constants import HEART_DATASET_DIR, HEART_SITES
from fedhealth.ehr.dictionary import DataDictionary
from fedhealth.ehr.harmonize import harmonize, read_table
from fedhealth.ehr.mapping import SiteMapping
from fedhealth_tools.data.heart_canonical import FEATURES, CanonicalSplit, canonical_sites, heart_dictionary
from fedhealth_tools.data.heart_dialects import write_heart_dialect_site, write_heart_dialects

SPEC_KEYS = {"id_column", "missing_tokens", "target", "columns"}
# site -> (header start, a string that must be in the raw file, the missing token)
DIALECT = {
    "cleveland": ("patient_id,age,sex,cp,trestbps,chol,", ",?,", "?"),
    "hungary": ("patient_id,age,sex,cp,trestbps,chol_mmol,", ",-9,", "-9"),
    "switzerland": ("patient_id,age,sex,chest_pain,", ",Male,typical angina,", ""),
    "va_long_beach": ("patient_id,site_name,age,sex,chest_pain,resting_bp,", ",NA,", "NA"),
}
CHOL_MG_PER_DL_TOLERANCE = 0.5  # two decimals in mmol/L: 0.005 * 38.67 = 0.19 mg/dL at worst


@pytest.fixture(scope="module")
def sites() -> dict[str, CanonicalSplit]:
    return canonical_sites()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, sites: dict[str, CanonicalSplit]) -> Path:
    root = tmp_path_factory.mktemp("sites")
    for site in HEART_SITES:
        write_heart_dialect_site(root / site, site, splits=sites)
    return root


def _folder(root: Path, site: str) -> Path:
    return root / site / HEART_DATASET_DIR


def test_the_dictionary_parses_with_13_features() -> None:
    dictionary = DataDictionary.from_dict(heart_dictionary())
    assert dictionary.names == list(FEATURES) and len(dictionary.names) == 13
    assert dictionary.feature("chol").molar_mass == "386.65 g/mol"
    assert dictionary.feature("cp").codes["asymptomatic"] == ("4",)


@pytest.mark.parametrize(("site", "dialect"), DIALECT.items())
def test_each_file_is_in_its_dialect(exported: Path, site: str, dialect: tuple[str, str, str]) -> None:
    header, sample, token = dialect
    folder = _folder(exported, site)
    assert sorted(p.name for p in folder.iterdir()) == ["mapping.json", "test.csv", "train.csv"]
    text = (folder / "train.csv").read_text()
    assert text.startswith(header) and sample in text
    mapping = json.loads((folder / "mapping.json").read_text())
    assert set(mapping) == SPEC_KEYS and mapping["missing_tokens"] == [token]
    assert mapping["id_column"] == "patient_id"
    assert text.splitlines()[1].startswith(f"{site[:3].upper() if site != 'va_long_beach' else 'VAL'}-")


def test_hungary_writes_cholesterol_in_mmol_per_litre(exported: Path) -> None:
    raw = read_table(_folder(exported, "hungary") / "train.csv", label="hungary")
    mmol = pd.to_numeric(raw["chol_mmol"][raw["chol_mmol"] != "-9"])
    assert 2.0 < mmol.median() < 10.0 and mmol.max() < 20.0  # mg/dL would be 100-600
    assert raw["chol_mmol"].str.fullmatch(r"-9|\d+\.\d\d").all()


def test_switzerland_spells_text_and_writes_empty_cells(exported: Path) -> None:
    raw = read_table(_folder(exported, "switzerland") / "train.csv", label="switzerland")
    assert set(raw["chest_pain"]) <= {"typical angina", "atypical angina", "non-anginal", "asymptomatic"}
    assert set(raw["restecg"]) <= {"normal", "st-t abnormality", "lv hypertrophy", ""}
    assert set(raw["sex"]) == {"Male", "Female"} and (raw["chol"] == "0").all()
    assert (raw["ca"] == "").mean() > 0.9


def test_va_writes_booleans_and_its_own_names(exported: Path) -> None:
    raw = read_table(_folder(exported, "va_long_beach") / "train.csv", label="va")
    assert {"resting_bp", "max_hr", "st_depression"} <= set(raw.columns) and "trestbps" not in raw.columns
    assert set(raw["exercise_angina"]) == {"TRUE", "FALSE", "NA"}
    assert set(raw["heart_disease"]) == {"TRUE", "FALSE"}


def _expected(canonical: pd.DataFrame) -> pd.DataFrame:
    """The canonical frame with the dictionary's plausible ranges applied (0 cholesterol, 0 mmHg)."""
    expected = canonical[list(FEATURES)].copy()
    for f in heart_dictionary()["features"]:
        if "range" in f:
            low, high = f["range"]
            expected[f["name"]] = expected[f["name"]].where(expected[f["name"]].between(low, high))
    return expected


@pytest.mark.parametrize("site", HEART_SITES)
@pytest.mark.parametrize("part", ["train", "test"])
def test_round_trip_gives_the_canonical_values(
    exported: Path, sites: dict[str, CanonicalSplit], site: str, part: str
) -> None:
    folder = _folder(exported, site)
    mapping = SiteMapping.load(folder, label=site)
    dictionary = DataDictionary.from_dict(heart_dictionary())
    got = harmonize(read_table(folder / f"{part}.csv", label=part), dictionary, mapping, label=part)
    canonical = getattr(sites[site], part)
    expected = _expected(canonical)
    np.testing.assert_array_equal(got.labels, canonical["heart_disease"].to_numpy(dtype="float32"))
    assert got.report.ignored_columns == (["site_name"] if site == "va_long_beach" else [])
    assert got.report.absent_features == []
    for name in FEATURES:
        ours, theirs = got.features[name], expected[name]
        pd.testing.assert_series_equal(ours.isna(), theirs.isna(), check_names=False)
        if name == "chol" and site == "hungary":
            diff = (ours - theirs).abs().max()
            assert diff < CHOL_MG_PER_DL_TOLERANCE, f"cholesterol off by {diff} mg/dL"
        elif ours.dtype == object:
            assert ours.dropna().tolist() == theirs.dropna().tolist()
        else:
            np.testing.assert_allclose(
                ours.dropna().to_numpy(), theirs.dropna().to_numpy(), rtol=0, atol=1e-9
            )


def test_write_heart_dialects_names_an_unknown_site(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"sites \['north'\] are not heart hospitals"):
        write_heart_dialects({"north": tmp_path})
    assert write_heart_dialects({"switzerland": tmp_path}) == {"switzerland": (80, 43)}
