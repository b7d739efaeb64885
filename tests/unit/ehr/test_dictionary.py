"""The job's data dictionary: parsed features, the fingerprint, and every malformed key named."""

from __future__ import annotations

import copy

import pytest
from ehr_cases import CP, DICTIONARY

from fedhealth.ehr.dictionary import DataDictionary


def _with_feature(feature: dict) -> dict:
    data = copy.deepcopy(DICTIONARY)
    data["features"].append(feature)
    return data


# (case, dictionary, the exact error)
BAD = [
    ("not an object", [1, 2], "the data dictionary must be a JSON object, not a list"),
    ("no name", {**DICTIONARY, "name": ""}, "the data dictionary: 'name' must be a non-empty string"),
    (
        "no target",
        {**DICTIONARY, "target": "num"},
        "the data dictionary needs a 'target' object with a 'name'",
    ),
    ("no features", {**DICTIONARY, "features": []}, "the data dictionary needs a non-empty 'features' list"),
    (
        "target is a feature",
        {**DICTIONARY, "target": {"name": "age"}},
        "data dictionary: the target 'age' is also a feature",
    ),
    ("version", {**DICTIONARY, "version": "1"}, "data dictionary: 'version' must be a whole number"),
    (
        "twice",
        _with_feature({"name": "age", "kind": "numeric"}),
        "data dictionary: feature 'age' is defined twice",
    ),
    (
        "bad name",
        _with_feature({"name": "1st", "kind": "numeric"}),
        "data dictionary, feature '1st': a name is a letter then letters, digits or '_' (at most 64)",
    ),
    (
        "unknown key",
        _with_feature({"name": "bmi", "kind": "numeric", "units": "kg/m**2"}),
        "data dictionary, feature 'bmi': unknown key(s) ['units']; a feature takes ['categories', 'codes', "
        "'description', 'kind', 'molar_mass', 'name', 'range', 'required', 'unit']",
    ),
    (
        "kind",
        _with_feature({"name": "bmi", "kind": "float"}),
        "data dictionary, feature 'bmi': 'kind' must be one of ('numeric', 'binary', 'categorical'), "
        "not 'float'",
    ),
    (
        "range reversed",
        _with_feature({"name": "bmi", "kind": "numeric", "range": [60, 10]}),
        "data dictionary, feature 'bmi': 'range' must be [low, high] with low < high",
    ),
    (
        "range of a binary",
        _with_feature({"name": "smoker", "kind": "binary", "range": [0, 1]}),
        "data dictionary, feature 'smoker': only a numeric feature has a 'range'",
    ),
    (
        "one category",
        _with_feature({"name": "thal", "kind": "categorical", "categories": ["normal"]}),
        "data dictionary, feature 'thal': a categorical feature needs at least two distinct 'categories'",
    ),
    (
        "codes of an unknown category",
        _with_feature(
            {"name": "thal", "kind": "categorical", "categories": ["a", "b"], "codes": {"c": ["7"]}}
        ),
        "data dictionary, feature 'thal': 'codes' names categories it does not define: ['c']",
    ),
    (
        "a code twice",
        _with_feature(
            {
                "name": "thal",
                "kind": "categorical",
                "categories": ["a", "b"],
                "codes": {"a": ["7"], "b": ["7"]},
            }
        ),
        "data dictionary, feature 'thal': code '7' is listed under two categories",
    ),
    (
        "unit of a binary",
        _with_feature({"name": "smoker", "kind": "binary", "unit": "1"}),
        "data dictionary, feature 'smoker': only a numeric feature has a 'unit' (a string such as 'mg/dL')",
    ),
]


@pytest.mark.parametrize(("case", "data", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_malformed_dictionary_is_named(case: str, data: object, message: str) -> None:
    with pytest.raises(ValueError) as err:
        DataDictionary.from_dict(data)  # type: ignore[arg-type]
    assert str(err.value) == message


def test_features_are_parsed_with_their_defaults() -> None:
    d = DataDictionary.from_dict(DICTIONARY)
    assert d.name == "heart_mini" and d.target == "heart_disease" and d.version == 1
    assert d.names == ["age", "sex", "cp", "chol"]
    age, sex, cp, chol = d.features
    assert (age.kind, age.unit, age.range, age.required) == ("numeric", "year", (18.0, 100.0), True)
    assert (sex.kind, sex.unit, sex.range, sex.required) == ("binary", None, None, False)
    assert cp.categories == tuple(CP) and cp.codes["asymptomatic"] == ("4",)
    assert chol.molar_mass == "386.65 g/mol"
    assert d.feature("chol") is chol
    with pytest.raises(KeyError):
        d.feature("thal")


def test_the_fingerprint_ignores_key_order_and_sees_every_change() -> None:
    reordered = dict(reversed(list(copy.deepcopy(DICTIONARY).items())))
    changed = copy.deepcopy(DICTIONARY)
    changed["features"][3]["range"] = [80, 600]
    fingerprint = DataDictionary.from_dict(DICTIONARY).fingerprint()
    assert len(fingerprint) == 64
    assert DataDictionary.from_dict(reordered).fingerprint() == fingerprint
    assert DataDictionary.from_dict(changed).fingerprint() != fingerprint
