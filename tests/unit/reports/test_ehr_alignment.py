"""The feature-alignment section: table numbers, "who lacks what" sentences, heat map, and the report hook.

SCHEMA is an aligned schema in the format the server writes (``ehr_schema.json``): four hospitals,
switzerland does not record chol or ca, va_long_beach sent no count for cp, cleveland's missing
counts of thal and ca and hungary's present count of ca are suppressed (below min_cell 5), and ca
was dropped by the policy.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from fedhealth.constants import EHR_SCHEMA_FILE
from fedhealth.reports.ehr_alignment import (
    HEATMAP_FILE,
    alignment_markdown,
    alignment_section,
    feature_table,
    find_ehr_schema,
    heatmap_size,
    lacks,
    missingness_heatmap,
)
from fedhealth.reports.job_result import report_job_result, summary_text
from fedhealth_tools.cli import main

CA_REASON = "recorded at 1 of 4 sites (min_sites_with_feature 2)"
ROWS = {"cleveland": 200, "hungary": 198, "switzerland": 80, "va_long_beach": 100}
COUNTS = {  # site: {feature: (present, missing)}; None = suppressed; a feature left out: no count sent
    "cleveland": {"age": (200, 0), "chol": (200, 0), "cp": (200, 0), "thal": (198, None), "ca": (196, None)},
    "hungary": {"age": (198, 0), "chol": (175, 23), "cp": (198, 0), "thal": (20, 178), "ca": (None, 195)},
    "switzerland": {"age": (80, 0), "chol": (0, 80), "cp": (80, 0), "thal": (36, 44), "ca": (0, 80)},
    "va_long_beach": {"age": (100, 0), "chol": (100, 0), "thal": (17, 83), "ca": (0, 100)},
}
SCHEMA = {
    "dictionary": "0" * 64,
    "policy": {
        "mode": "union",
        "min_sites_with_feature": 2,
        "max_missing_fraction": 0.6,
        "indicators": True,
        "imputation": "mean",
        "min_cell": 5,
    },
    "features": [
        {"name": "age", "kind": "numeric", "indicator": False, "impute": 53.5, "columns": ["age"]},
        {
            "name": "chol",
            "kind": "numeric",
            "indicator": True,
            "impute": 241.5,
            "columns": ["chol", "chol_missing"],
        },
        {
            "name": "cp",
            "kind": "categorical",
            "categories": ["typical_angina", "atypical_angina", "non_anginal", "asymptomatic"],
            "indicator": False,
            "columns": ["cp=atypical_angina", "cp=non_anginal", "cp=asymptomatic"],
        },
        {
            "name": "thal",
            "kind": "categorical",
            "categories": ["normal", "fixed_defect", "reversible_defect"],
            "indicator": True,
            "columns": ["thal=fixed_defect", "thal=reversible_defect", "thal_missing"],
        },
    ],
    "columns": ["age", "chol", "chol_missing", "cp=atypical_angina", "cp=non_anginal", "cp=asymptomatic"]
    + ["thal=fixed_defect", "thal=reversible_defect", "thal_missing"],
    "mean": [0.0] * 9,
    "std": [1.0] * 9,
    "dropped": [{"name": "ca", "reason": CA_REASON}],
    "sites": {
        site: {
            "rows": ROWS[site],
            "features": {f: {"present": p, "missing": m} for f, (p, m) in counts.items()},
        }
        for site, counts in COUNTS.items()
    },
}

# name, kept, sites with it, federation missing fraction (low, high), the feature's table row after its
# name: kind, kept, reason, indicator, imputation, sites with it, missing (all), cleveland .. va_long_beach
TABLE = [
    ("age", True, 4, (0 / 578, 0 / 578), "numeric|kept||no|53.5|4 of 4|0.0 %|0.0 %|0.0 %|0.0 %|0.0 %"),
    ("chol", True, 3, (103 / 578,) * 2, "numeric|kept||yes|241.5|3 of 4|17.8 %|0.0 %|11.6 %|absent|0.0 %"),
    ("cp", True, 3, (0 / 478, 0 / 478), "categorical|kept||no|–|3 of 4|0.0 %|0.0 %|0.0 %|0.0 %|–"),
    ("thal", True, 4, (306 / 578, 309 / 578),
     "categorical|kept||yes|–|4 of 4|52.9–53.5 %|suppressed|89.9 %|55.0 %|83.0 %"),
    ("ca", False, 1, (376 / 578, 379 / 578),
     f"–|dropped|{CA_REASON}|–|–|1 of 4|65.1–65.6 %|suppressed|98.5 %|absent|absent"),
]  # fmt: skip

LACKS = [
    "thal is missing for fewer than 5 patients at cleveland (count suppressed)",
    "ca is missing for fewer than 5 patients at cleveland (count suppressed)",
    "thal is missing for 90 % of patients at hungary",
    "ca is missing for 98 % of patients at hungary (fewer than 5 have it: count suppressed)",
    "switzerland does not record chol (100 % missing)",
    "thal is missing for 55 % of patients at switzerland",
    "switzerland does not record ca (100 % missing)",
    "va_long_beach sent no count for cp",
    "thal is missing for 83 % of patients at va_long_beach",
    "va_long_beach does not record ca (100 % missing)",
]

RESULT = Path(__file__).parent / "data" / "heart_fedprox_result"


@pytest.mark.parametrize(("name", "kept", "with_it", "fraction", "line"), TABLE)
def test_feature_table_rows(name: str, kept: bool, with_it: int, fraction: tuple, line: str) -> None:
    row = next(r for r in feature_table(SCHEMA) if r["name"] == name)
    assert row["kept"] is kept and row["sites_with_feature"] == with_it and row["n_sites"] == 4
    assert (row["missing_fraction"], row["missing_fraction_max"]) == pytest.approx(fraction)
    expected = "| " + " | ".join([name, *line.split("|")]) + " |"
    assert expected in alignment_markdown(alignment_section(SCHEMA)).splitlines()


def test_table_order_and_per_site_cells() -> None:
    rows = feature_table(SCHEMA)
    assert [r["name"] for r in rows] == ["age", "chol", "cp", "thal", "ca"]
    chol = rows[1]["per_site"]
    assert chol["hungary"] == {
        "status": "ok",
        "missing_fraction": 23 / 198,
        "present": 175,
        "missing": 23,
        "rows": 198,
    }
    assert chol["switzerland"]["status"] == "absent" and chol["switzerland"]["missing_fraction"] == 1.0
    assert rows[2]["per_site"]["va_long_beach"]["status"] == "unknown"
    assert rows[3]["per_site"]["cleveland"] == {
        "status": "suppressed",
        "missing_fraction": None,
        "present": 198,
        "missing": None,
        "rows": 200,
    }
    assert rows[1]["impute"] == 241.5 and rows[1]["indicator"] is True and rows[4]["indicator"] is None


def test_lacks_sentences() -> None:
    assert lacks(SCHEMA) == LACKS


def test_a_share_below_100_is_never_said_as_100() -> None:
    schema = json.loads(json.dumps(SCHEMA))
    schema["sites"]["cleveland"]["features"]["age"] = {"present": 1, "missing": 199}  # 99.5 %
    assert "age is missing for 99 % of patients at cleveland" in lacks(schema)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("sites"), "ehr_schema.json: no 'sites'"),
        (lambda s: s["features"][1].pop("name"), r"ehr_schema.json: features\[1\] has no 'name'"),
        (lambda s: s["dropped"].append({"reason": "x"}), r"ehr_schema.json: dropped\[1\] has no 'name'"),
    ],
)
def test_a_malformed_schema_is_a_clear_error(change, message: str) -> None:
    schema = json.loads(json.dumps(SCHEMA))
    change(schema)
    with pytest.raises(ValueError, match=message):
        feature_table(schema)


def test_heatmap_is_a_png_of_the_expected_size(tmp_path: Path) -> None:
    path = missingness_heatmap(SCHEMA, tmp_path / "heat.png")
    assert path == tmp_path / "heat.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = heatmap_size(4, 5)
    image = mpimg.imread(path)
    assert image.shape == (round(height * 120), round(width * 120), 4) == (540, 840, 4)
    assert image[..., :3].std() > 0.05  # drawn, not blank


def _result_with_schema(tmp_path: Path, schema: dict | None) -> Path:
    result = tmp_path / "result"
    shutil.copytree(RESULT, result)
    if schema is not None:
        (result / "workspace" / EHR_SCHEMA_FILE).write_text(json.dumps(schema))
    return result


def test_the_report_has_the_section_when_the_result_holds_the_schema(tmp_path: Path) -> None:
    result = _result_with_schema(tmp_path, SCHEMA)
    assert find_ehr_schema(result) == SCHEMA
    report, paths = report_job_result(result, tmp_path / "out")
    heatmap = tmp_path / "out" / HEATMAP_FILE
    assert heatmap in paths and mpimg.imread(heatmap).shape == (540, 840, 4)
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "## Feature alignment (data dictionary, counts only)" in markdown
    assert (
        "Policy: mode union, min_sites_with_feature 2, max_missing_fraction 0.6, indicators yes, "
        "imputation mean, min_cell 5. 4 features kept (9 model columns), 1 dropped. "
        "Patients per site: cleveland 200, hungary 198, switzerland 80, va_long_beach 100."
    ) in markdown
    assert "Which site lacks what (missing for at least 50 % of its patients;" in markdown
    assert all(f"- {sentence}" in markdown for sentence in LACKS)
    assert f"Missingness heat map (site x feature): `{HEATMAP_FILE}`, next to this report." in markdown
    assert f"![missingness per site and feature]({HEATMAP_FILE})" in markdown
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["alignment"]["lacks"] == LACKS and saved["alignment"]["kept"] == 4
    assert "feature alignment: 4 features kept, 1 dropped; 10 site gaps" in summary_text(report)


def test_no_section_without_the_schema(tmp_path: Path) -> None:
    result = _result_with_schema(tmp_path, None)
    assert find_ehr_schema(result) is None
    report, paths = report_job_result(result, tmp_path / "out")
    assert "alignment" not in report and HEATMAP_FILE not in [p.name for p in paths]
    assert "Feature alignment" not in (tmp_path / "out" / "report.md").read_text()
    assert "feature alignment" not in summary_text(report)


def test_an_unreadable_schema_fails_the_report_command_naming_the_file(tmp_path: Path, capsys) -> None:
    result = _result_with_schema(tmp_path, None)
    (result / "workspace" / EHR_SCHEMA_FILE).write_text("{not json")
    assert main(["report", str(result)]) == 1
    assert f"{EHR_SCHEMA_FILE}: not valid JSON" in capsys.readouterr().err


def test_a_site_with_fewer_than_min_cell_values_does_not_count_as_recording_the_feature() -> None:
    schema = copy.deepcopy(SCHEMA)
    schema["sites"]["hungary"]["features"]["ca"] = {"present": 3, "missing": ROWS["hungary"] - 3}
    schema["sites"]["cleveland"]["features"]["ca"] = {"present": 5, "missing": ROWS["cleveland"] - 5}
    (row,) = [r for r in feature_table(schema) if r["name"] == "ca"]
    assert row["sites_with_feature"] == 1  # cleveland's 5 count (min_cell 5), hungary's 3 do not
