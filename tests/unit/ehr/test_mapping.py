"""A site's mapping: its checks, how a header resolves onto the dictionary, and unit conversion with pint."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from ehr_cases import MAPPING, dictionary, mapping

from fedhealth.data.messages import SiteDataError
from fedhealth.ehr.dictionary import DataDictionary
from fedhealth.ehr.mapping import DEFAULT_MISSING_TOKENS, ColumnMap, SiteMapping, unit_factor

LABEL = "heart_mini/mapping.json"
TARGET = MAPPING["target"]
# (case, mapping, the exact error)
BAD_MAPPINGS = [
    ("not an object", ["num"], f"{LABEL}: must hold a JSON object"),
    ("unknown key", {**MAPPING, "column": {}}, f"{LABEL}: unknown key(s) ['column']"),
    (
        "no target column",
        {**MAPPING, "target": {"positive": ["1"], "negative": ["0"]}},
        f"{LABEL}: 'target' must be an object with 'column', 'positive', 'negative'",
    ),
    (
        "overlapping target",
        {**MAPPING, "target": {**TARGET, "negative": ["0", "1"]}},
        f"{LABEL}: target 'positive' and 'negative' must be non-empty and disjoint",
    ),
    (
        "target values not a list",
        {**MAPPING, "target": {**TARGET, "negative": "0"}},
        f"{LABEL}: expected a list of strings",
    ),
    (
        "columns a list",
        {**MAPPING, "columns": ["age"]},
        f"{LABEL}: 'columns' must be an object {{local column: feature}}",
    ),
    (
        "column without feature",
        {**MAPPING, "columns": {"chol_mmol": {"unit": "mmol/L"}}},
        f"{LABEL}, column 'chol_mmol': a feature name, null, or an object with 'feature'",
    ),
    (
        "column unknown key",
        {**MAPPING, "columns": {"chol_mmol": {"feature": "chol", "units": "mmol/L"}}},
        f"{LABEL}, column 'chol_mmol': unknown key(s) ['units']",
    ),
    (
        "recode a list",
        {**MAPPING, "columns": {"chest_pain": {"feature": "cp", "recode": ["a"]}}},
        f"{LABEL}, column 'chest_pain': 'recode' must be an object {{local value: value}}",
    ),
    ("id column a number", {**MAPPING, "id_column": 3}, f"{LABEL}: 'id_column' must be a string"),
    (
        "train file a path",
        {**MAPPING, "train": "../other/train.csv"},
        f"{LABEL}: 'train' must be a file name in the dataset folder",
    ),
    (
        "test file hidden",
        {**MAPPING, "test": ".test.csv"},
        f"{LABEL}: 'test' must be a file name in the dataset folder",
    ),
]
# (case, columns of the mapping, the file's header, the exact error of resolve)
BAD_HEADERS = [
    (
        "mapped column absent",
        {"chol_mmol": {"feature": "chol", "unit": "mmol/L"}},
        ["patient_id", "age", "num"],
        "the mapping names column(s) ['chol_mmol'] that the file lacks",
    ),
    ("target column absent", {}, ["patient_id", "age", "outcome"], "the target column 'num' is missing"),
    (
        "feature the dictionary lacks",
        {"bmi_local": "bmi"},
        ["age", "bmi_local", "num"],
        "column 'bmi_local' maps to 'bmi', which the dictionary lacks",
    ),
    (
        "two columns, one feature",
        {"age_years": "age"},
        ["age", "age_years", "num"],
        "columns 'age' and 'age_years' both map to feature 'age'",
    ),
]
# (local unit, canonical value of one local unit, offset): chol is mg/dL with a molar mass of 386.65 g/mol
CHOL_UNITS = [
    ("mg/dL", 1.0, 0.0),
    ("g/L", 100.0, 0.0),
    ("mg/L", 0.1, 0.0),
    ("mmol/L", 38.665, 0.0),
    ("umol/L", 0.038665, 0.0),
]
# (local unit, the exact error): pint cannot parse it, or it is not a concentration
BAD_UNITS = [
    ("furlongs_per_fortnight", "feature 'chol': unit cannot be parsed (UndefinedUnitError)"),
    ("mmol/L)", "feature 'chol': unit cannot be parsed (TokenError)"),
    ("mg/", "feature 'chol': unit cannot be parsed (AssertionError)"),
    ("kg", "feature 'chol': unit 'kg' does not convert to 'mg/dL'"),
    ("mmol", "feature 'chol': unit 'mmol' does not convert to 'mg/dL'"),
    ("degC", "feature 'chol': unit 'degC' does not convert to 'mg/dL'"),
]


@pytest.mark.parametrize(("case", "data", "message"), BAD_MAPPINGS, ids=[b[0] for b in BAD_MAPPINGS])
def test_a_malformed_mapping_names_the_key(case: str, data: object, message: str) -> None:
    with pytest.raises(SiteDataError) as err:
        SiteMapping.from_dict(data, label=LABEL)
    assert str(err.value) == message


def test_a_mapping_parses_shorthand_objects_and_null() -> None:
    m = SiteMapping.from_dict(
        {
            "target": {"column": "num", "positive": [1, 2], "negative": [0]},
            "columns": {
                "years": "age",
                "chol_mmol": {"feature": "chol", "unit": "mmol/L", "missing_values": [0]},
                "chest_pain": {"feature": "cp", "recode": {"typical angina": "typical_angina"}},
                "remarks": None,
            },
            "train": "export_2024.csv",
        }
    )
    assert m.columns["years"] == ColumnMap("years", "age")
    assert m.columns["chol_mmol"] == ColumnMap("chol_mmol", "chol", unit="mmol/L", missing_values=("0",))
    assert m.columns["chest_pain"].recode == {"typical angina": "typical_angina"}
    assert m.columns["remarks"] is None
    assert m.target.positive == ("1", "2") and m.target.negative == ("0",)
    assert m.missing_tokens == DEFAULT_MISSING_TOKENS and m.id_column is None
    assert (m.train, m.test) == ("export_2024.csv", "test.csv")


@pytest.mark.parametrize(
    ("case", "columns", "header", "message"), BAD_HEADERS, ids=[b[0] for b in BAD_HEADERS]
)
def test_a_header_the_mapping_does_not_fit_is_named(
    case: str, columns: dict, header: list[str], message: str
) -> None:
    with pytest.raises(SiteDataError) as err:
        mapping(columns=columns).resolve(header, dictionary())
    assert str(err.value) == message


def test_resolve_maps_same_name_columns_and_lists_the_ignored_ones() -> None:
    m = mapping(columns={"chest_pain": "cp", "remarks": None})
    header = ["patient_id", "age", "chest_pain", "ward", "remarks", "num"]
    used, ignored = m.resolve(header, dictionary())
    assert sorted(used) == ["age", "cp"]
    assert used["age"] == ColumnMap("age", "age") and used["cp"].column == "chest_pain"
    assert ignored == ["ward", "remarks"]  # the id and target columns are neither used nor ignored


def test_load_reads_the_sites_file_and_names_a_missing_or_broken_one(tmp_path: Path) -> None:
    with pytest.raises(SiteDataError) as err:
        SiteMapping.load(tmp_path, label="heart_mini")
    assert str(err.value) == "heart_mini: no mapping.json (the site's mapping of its table) at this site"
    (tmp_path / "mapping.json").write_bytes(b'{"target": "caf\xe9"}')
    with pytest.raises(SiteDataError) as err:
        SiteMapping.load(tmp_path, label="heart_mini")
    assert str(err.value) == "heart_mini/mapping.json is not valid UTF-8 JSON: UnicodeDecodeError"
    (tmp_path / "mapping.json").write_text("{'target': 1}")
    with pytest.raises(SiteDataError) as err:
        SiteMapping.load(tmp_path, label="heart_mini")
    assert str(err.value) == "heart_mini/mapping.json is not valid UTF-8 JSON: JSONDecodeError"
    (tmp_path / "mapping.json").write_text(json.dumps({**MAPPING, "extra": 1}))
    with pytest.raises(SiteDataError) as err:
        SiteMapping.load(tmp_path, label="heart_mini")
    assert str(err.value) == "heart_mini/mapping.json: unknown key(s) ['extra']"
    (tmp_path / "mapping.json").write_text(json.dumps(copy.deepcopy(MAPPING)))
    assert SiteMapping.load(tmp_path, label="heart_mini").id_column == "patient_id"


@pytest.mark.parametrize(("unit", "scale", "offset"), CHOL_UNITS)
def test_concentrations_convert_through_the_molar_mass(unit: str, scale: float, offset: float) -> None:
    got_scale, got_offset = unit_factor(unit, dictionary().feature("chol"))
    assert got_scale == pytest.approx(scale, rel=1e-9) and got_offset == pytest.approx(offset, abs=1e-9)


def test_five_mmol_per_litre_of_cholesterol_is_193_mg_per_decilitre() -> None:
    scale, offset = unit_factor("mmol/L", dictionary().feature("chol"))
    assert 5.0 * scale + offset == pytest.approx(193.3, abs=0.05)


def test_an_offset_unit_converts_with_its_offset() -> None:
    temp = DataDictionary.from_dict(
        {
            "name": "t",
            "target": {"name": "y"},
            "features": [{"name": "temp", "kind": "numeric", "unit": "degC"}],
        }
    ).feature("temp")
    scale, offset = unit_factor("degF", temp)
    assert 98.6 * scale + offset == pytest.approx(37.0, abs=1e-9)


@pytest.mark.parametrize(("unit", "message"), BAD_UNITS)
def test_a_unit_that_does_not_parse_or_convert_is_named(unit: str, message: str) -> None:
    with pytest.raises(SiteDataError) as err:
        unit_factor(unit, dictionary().feature("chol"))
    assert str(err.value) == message


def test_a_feature_without_a_unit_or_with_a_bad_molar_mass_is_named() -> None:
    with pytest.raises(SiteDataError) as err:
        unit_factor("mmol/L", dictionary().feature("sex"))
    assert str(err.value) == "feature 'sex' has no unit in the dictionary; the mapping gives one"
    features = copy.deepcopy(dictionary().source["features"])
    features[3]["molar_mass"] = "386.65 g/mole)"
    chol = dictionary(features=features).feature("chol")
    with pytest.raises(SiteDataError) as err:
        unit_factor("mmol/L", chol)
    assert str(err.value) == "feature 'chol': the dictionary's molar_mass cannot be parsed (TokenError)"
