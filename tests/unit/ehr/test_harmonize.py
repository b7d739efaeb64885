"""A hospital's export -> canonical features: missing tokens, units, codes, ranges; errors that stop a site.

Every table is a real file read with ``read_table``; messages are asserted whole and never hold a value.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from ehr_cases import HEADER, dictionary, harmonized, mapping, write_csv

from fedhealth.data.messages import SiteDataError
from fedhealth.ehr.harmonize import read_table

LABEL = "heart_mini/train.csv"
NAN = math.nan
# One file with a problem of each kind; header = line 1, so row i is line i + 2.
MIXED = [
    ["P1", 63, 1, "typical_angina", 233, 0],
    ["P2", 41, 0, "2", 204, 1],  # cp as the dictionary's code 2 (atypical_angina)
    ["P3", "?", 1, "asymptomatic", 0, 2],  # age a missing token; chol 0 outside [80, 700]
    ["P4", " 57 ", "NA", "Zzyzx", 250, 0],  # spaces stripped; sex missing; cp no category nor code
    ["P5", 150, 1, "", 900, 3],  # age and chol out of range; cp empty
]
MIXED_EXPECTED = {
    "age": [63, 41, NAN, 57, NAN],
    "sex": [1, 0, 1, NAN, 1],
    "cp": ["typical_angina", "atypical_angina", "asymptomatic", None, None],
    "chol": [233, 204, NAN, 250, NAN],
}
MIXED_REPORT = [
    f"{LABEL}: 5 row(s)",
    "column 'age': 1 out of range value(s) (outside 18..100 year) in line(s) 6",
    "column 'cp': 1 unknown code value(s) (not a category or code of the dictionary) in line(s) 5",
    "column 'chol': 2 out of range value(s) (outside 80..700 mg/dL) in line(s) 4, 6",
]
# (case, file bytes or None for no file, the exact error of read_table)
BAD_FILES = [
    ("missing", None, f"{LABEL} is missing at this site"),
    ("empty", b"", f"{LABEL} is empty"),
    ("blank lines only", b"\n\n", f"{LABEL} is empty"),
    ("header only", b"patient_id,age,sex,cp,chol,num\n", f"{LABEL} has a header but no rows"),
    (
        "latin-1",
        "patient_id,age,sex,cp,chol,num\nP1,63,1,1,233,0\nP2,41,0,angine atypique \xe9,204,1\n".encode(
            "latin-1"
        ),
        f"{LABEL} is not UTF-8 text (line 3); export it as UTF-8",
    ),
    ("ragged", b"a,b\n1,2\n3,4,5\n", f"{LABEL} cannot be read as CSV: ParserError"),
]
# (case, header, rows, mapping changes, the exact error of harmonize)
BAD_TABLES = [
    (
        "required feature absent",
        ["patient_id", "sex", "cp", "chol", "num"],
        [["P1", 1, 1, 233, 0]],
        {},
        f"{LABEL}: required feature(s) ['age'] have no column in this table",
    ),
    (
        "target column absent",
        ["patient_id", "age", "sex", "cp", "chol", "outcome"],
        [["P1", 63, 1, 1, 233, 0]],
        {},
        f"{LABEL}: the target column 'num' is missing",
    ),
    (
        "mapped column absent",
        HEADER,
        [["P1", 63, 1, 1, 233, 0]],
        {"columns": {"chol_mmol": {"feature": "chol", "unit": "mmol/L"}}},
        f"{LABEL}: the mapping names column(s) ['chol_mmol'] that the file lacks",
    ),
    (
        "unit pint cannot parse",
        ["patient_id", "age", "chol_mmol", "num"],
        [["P1", 63, 5.0, 0]],
        {"columns": {"chol_mmol": {"feature": "chol", "unit": "millimoles_per_litre"}}},
        f"{LABEL}, column 'chol_mmol': feature 'chol': unit cannot be parsed (UndefinedUnitError)",
    ),
    (
        "unit that does not convert",
        ["patient_id", "age", "chol_mmol", "num"],
        [["P1", 63, 5.0, 0]],
        {"columns": {"chol_mmol": {"feature": "chol", "unit": "mmol"}}},
        f"{LABEL}, column 'chol_mmol': feature 'chol': unit 'mmol' does not convert to 'mg/dL'",
    ),
    (
        "id column absent",
        ["age", "num"],
        [[63, 0]],
        {},
        f"{LABEL}: the id column 'patient_id' named in the mapping is missing",
    ),
    (
        "duplicate ids",
        HEADER,
        [["MRN-55555", 63, 1, 1, 233, 0], ["P2", 41, 0, 2, 204, 1], ["MRN-55555", 57, 1, 4, 250, 0]],
        {},
        f"{LABEL}, column 'patient_id': duplicate patient ids in line(s) 2, 4",
    ),
    (
        "many duplicate ids",
        HEADER,
        [[pid, 63, 1, 1, 233, 0] for pid in ("A", "B", "A", "C", "B", "D")],
        {},
        f"{LABEL}, column 'patient_id': duplicate patient ids in line(s) 2, 3, 4 (4 in all)",
    ),
    (
        "target value neither positive nor negative",
        HEADER,
        [["P1", 63, 1, 1, 233, 0], ["P2", 41, 0, 2, 204, "?"]],
        {},
        f"{LABEL}, target column 'num': value neither positive nor negative in the mapping in line(s) 3",
    ),
]


def _column(values) -> list:
    return [None if isinstance(v, float) and math.isnan(v) else v for v in values]


@pytest.mark.parametrize(("case", "content", "message"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_an_unreadable_file_is_named(tmp_path: Path, case: str, content: bytes | None, message: str) -> None:
    path = tmp_path / "train.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SiteDataError) as err:
        read_table(path, label=LABEL)
    assert str(err.value) == message
    assert str(tmp_path) not in str(err.value)


def test_read_table_keeps_every_cell_as_stripped_text(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "t.csv", [" age ", "cp", "num"], [[" 63 ", "non anginal", "0"], ["", "NA", "1"]]
    )
    table = read_table(path, label=LABEL)
    assert list(table.columns) == ["age", "cp", "num"]
    assert table.to_dict("records") == [
        {"age": "63", "cp": "non anginal", "num": "0"},
        {"age": "", "cp": "NA", "num": "1"},
    ]


def test_a_trailing_comma_on_every_line_does_not_shift_the_columns(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("patient_id,age,num,\nP1,63,0,\nP2,41,1,\n")
    table = read_table(tmp_path / "t.csv", label=LABEL)
    assert table[["patient_id", "age", "num"]].to_dict("records") == [
        {"patient_id": "P1", "age": "63", "num": "0"},
        {"patient_id": "P2", "age": "41", "num": "1"},
    ]


@pytest.mark.parametrize(
    ("case", "header", "rows", "changes", "message"), BAD_TABLES, ids=[b[0] for b in BAD_TABLES]
)
def test_a_table_that_cannot_be_used_is_named(
    tmp_path: Path, case: str, header: list[str], rows: list, changes: dict, message: str
) -> None:
    with pytest.raises(SiteDataError) as err:
        harmonized(tmp_path, rows, header=header, site_mapping=mapping(**changes))
    assert str(err.value) == message
    assert "MRN-55555" not in str(err.value)


def test_each_value_is_canonical_missing_or_counted(tmp_path: Path) -> None:
    h = harmonized(tmp_path, MIXED)
    assert list(h.features.columns) == ["age", "sex", "cp", "chol"]
    for name, expected in MIXED_EXPECTED.items():
        assert _column(h.features[name].tolist()) == _column(expected), name
    assert h.features["age"].dtype == "float64" and h.features["cp"].dtype == object
    assert h.labels.dtype == np.float32 and h.labels.tolist() == [0, 1, 1, 0, 1]
    assert len(h) == 5
    assert h.report.lines_out() == MIXED_REPORT
    assert h.report.counts() == {"out_of_range": 3, "unknown_code": 1}


def test_out_of_range_cholesterol_zero_is_missing_and_counted(tmp_path: Path) -> None:
    rows = [["P1", 63, 1, 1, 0, 0], ["P2", 41, 0, 2, 0, 1], ["P3", 50, 0, 3, 233, 1]]
    h = harmonized(tmp_path, rows)
    assert _column(h.features["chol"].tolist()) == [None, None, 233.0]
    assert h.report.counts() == {"out_of_range": 2}
    assert (
        str(h.report.problems[0])
        == "column 'chol': 2 out of range value(s) (outside 80..700 mg/dL) in line(s) 2, 3"
    )


def test_missing_tokens_and_a_columns_own_missing_values(tmp_path: Path) -> None:
    """``-9`` is a table-wide token; ``0`` means "not measured" in the cholesterol column only."""
    site = mapping(columns={"chol": {"feature": "chol", "missing_values": ["0"]}})
    rows = [["P1", "-9", 0, 1, 0, 0], ["P2", "NA", 1, "?", 233, 1], ["P3", 50, "-9", 4, "", 1]]
    h = harmonized(tmp_path, rows, site_mapping=site)
    assert _column(h.features["age"].tolist()) == [None, None, 50.0]
    assert _column(h.features["sex"].tolist()) == [0.0, 1.0, None]  # a 0 outside chol is a value
    assert _column(h.features["cp"].tolist()) == ["typical_angina", None, "asymptomatic"]
    assert _column(h.features["chol"].tolist()) == [None, 233.0, None]
    assert h.report.problems == []  # a missing value is not a problem


def test_the_default_missing_tokens_apply_without_a_list(tmp_path: Path) -> None:
    site = mapping(missing_tokens=None)
    h = harmonized(tmp_path, [["P1", "NaN", 1, 1, "", 0], ["P2", "?", 0, 2, 233, 1]], site_mapping=site)
    assert _column(h.features["age"].tolist()) == [None, None]
    assert h.report.counts() == {"non_numeric": 1}  # '?' is not a default token
    assert str(h.report.problems[0]) == "column 'age': 1 non numeric value(s) in line(s) 3"


def test_mmol_per_litre_cholesterol_becomes_mg_per_decilitre(tmp_path: Path) -> None:
    header = ["patient_id", "age", "chol_mmol", "num"]
    site = mapping(columns={"chol_mmol": {"feature": "chol", "unit": "mmol/L"}})
    h = harmonized(
        tmp_path,
        [["P1", 63, 5.0, 0], ["P2", 41, 6.2, 1], ["P3", 50, 1.0, 1]],
        header=header,
        site_mapping=site,
    )
    chol = h.features["chol"].tolist()
    assert chol[0] == pytest.approx(193.3, abs=0.05)
    assert chol[1] == pytest.approx(6.2 * 38.665, rel=1e-9)
    assert math.isnan(chol[2])  # 38.7 mg/dL is below the plausible 80
    assert h.report.lines_out() == [
        f"{LABEL}: 3 row(s)",
        "features this table does not record: sex, cp",
        "column 'chol_mmol': 1 out of range value(s) (outside 80..700 mg/dL) in line(s) 4",
    ]


def test_a_column_the_dictionary_lacks_is_ignored_and_listed(tmp_path: Path) -> None:
    header = ["patient_id", "age", "ward", "sex", "cp", "chol", "num", "remarks"]
    rows = [["P1", 63, "B2", 1, 1, 233, 0, "x"], ["P2", 41, "C1", 0, 2, 204, 1, "y"]]
    h = harmonized(tmp_path, rows, header=header, site_mapping=mapping(columns={"remarks": None}))
    assert list(h.features.columns) == ["age", "sex", "cp", "chol"]
    assert h.report.ignored_columns == ["ward", "remarks"]
    assert h.report.lines_out()[1] == "ignored columns (not in the dictionary): ward, remarks"


def test_codes_names_and_recodes_of_a_category(tmp_path: Path) -> None:
    header = ["patient_id", "age", "chest_pain", "gender", "num"]
    site = mapping(
        columns={
            "chest_pain": {
                "feature": "cp",
                "recode": {"typical angina": "typical_angina", "TA2": "angina_2"},
            },
            "gender": {"feature": "sex", "recode": {"Male": 1, "Female": 0}},
        }
    )
    rows = [
        ["P1", 63, "typical angina", "Male", 0],
        ["P2", 41, "4", "Female", 1],
        ["P3", 50, "non_anginal", "1", 1],
        ["P4", 52, "TA2", "F", 0],  # recoded to no dictionary category; sex neither recoded nor 0/1
        ["P5", 58, "5", "2", 1],  # 5 is no code
    ]
    h = harmonized(tmp_path, rows, header=header, site_mapping=site)
    assert _column(h.features["cp"].tolist()) == ["typical_angina", "asymptomatic", "non_anginal", None, None]
    assert _column(h.features["sex"].tolist()) == [1.0, 0.0, 1.0, None, None]
    assert [str(p) for p in h.report.problems] == [
        "column 'gender': 2 not binary value(s) (not 0/1 after recoding) in line(s) 5, 6",
        "column 'chest_pain': 1 unknown code value(s) (not a category or code of the dictionary) in "
        "line(s) 6",
        "column 'chest_pain': 1 unknown code value(s) (recoded to no dictionary category) in line(s) 5",
    ]
    assert h.report.counts() == {"not_binary": 2, "unknown_code": 2}


def test_a_category_name_wins_over_a_code_that_spells_it(tmp_path: Path) -> None:
    """SPEC order: the site's recode, then a category's name, then a code."""
    features = [
        {"name": "age", "kind": "numeric"},
        {
            "name": "grade",
            "kind": "categorical",
            "categories": ["low", "high"],
            "codes": {"high": ["low", "H"]},
        },
    ]
    d = dictionary(features=features)
    rows = [["P1", 63, "low", 0], ["P2", 41, "H", 1], ["P3", 50, "low", 1]]
    site = mapping(columns={"grade": {"feature": "grade", "recode": {"H": "low"}}})
    h = harmonized(tmp_path, rows, header=["patient_id", "age", "grade", "num"], data_dictionary=d)
    assert h.features["grade"].tolist() == ["low", "high", "low"]
    h = harmonized(
        tmp_path, rows, header=["patient_id", "age", "grade", "num"], data_dictionary=d, site_mapping=site
    )
    assert h.features["grade"].tolist() == ["low", "low", "low"]


def test_no_value_of_the_table_reaches_a_message_or_the_report(tmp_path: Path) -> None:
    planted = ["MRN-55555", "987654", "Zz-Angina-Qx", "Gwynedd"]
    header = ["patient_id", "age", "sex", "cp", "chol", "num", "town"]
    rows = [
        ["MRN-55555", 987654, 1, "Zz-Angina-Qx", 233, 0, "Gwynedd"],
        ["P2", 41, "Zz-Angina-Qx", 2, 204, 1, "Leeds"],
    ]
    h = harmonized(tmp_path, rows, header=header)
    text = "\n".join(h.report.lines_out()) + repr(h.report)
    assert h.report.counts() == {"out_of_range": 1, "not_binary": 1, "unknown_code": 1}
    assert not [p for p in planted if p in text]
