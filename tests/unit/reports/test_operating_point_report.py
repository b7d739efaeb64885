"""The report's operating-point section: rows, the sites 0.5 would have failed, old results unchanged."""

from __future__ import annotations

import json

import numpy as np
from scipy.special import expit

from fedhealth.constants import M_INTERVALS, M_OPERATING_POINT
from fedhealth.reports.operating_point import operating_point_markdown, operating_point_section
from fedhealth.reports.run_report import build_report, to_markdown, write_report
from fedhealth.training.operating_point import OperatingPointConfig
from fedhealth.training.site_operating_point import site_operating_point

MODEL = "SRV_server"
# site -> (score shift of every image, calibration): "low" sits far below 0.5 (0.5 misses its positives),
# "centred" is centred on 0.5 (0.5 is fine), "tiny" has too few validation positives (falls back to 0.5).
SITES = {"centred": (0.0, "none"), "low": (-3.0, "platt"), "tiny": (0.0, "none")}


def _split(n: int, shift: float, seed: int, prevalence: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(float)
    return y, expit(rng.normal(3.0 * y - 1.5 + shift, 1.0))


def _cross(with_key: bool = True) -> dict:
    cross = {}
    for i, (site, (shift, calibration)) in enumerate(SITES.items()):
        val = _split(6 if site == "tiny" else 200, shift, 10 + i)
        op, iv = site_operating_point(
            val, _split(200, shift, 20 + i), OperatingPointConfig(calibration=calibration), n_bootstrap=100
        )
        result = {
            "accuracy": iv["accuracy"]["value"],
            "auc": iv["auc"]["value"],
            "n_test": 200,
            M_INTERVALS: iv,
        }
        if with_key:
            result[M_OPERATING_POINT] = op
        cross[site] = {MODEL: result}
    return cross


def _record() -> dict:
    sites = {s: {"n_train": 100, "n_test": 200} for s in SITES}
    return {"job_id": "j-1", "rounds": [{"round": 0, "sites": sites}], "failures": []}


def test_section_rows_and_the_site_half_would_have_failed() -> None:
    section = operating_point_section(_cross(), MODEL)
    assert list(section["sites"]) == ["centred", "low", "tiny"]
    assert list(section["half_failed"]) == ["low"]
    assert (
        section["sites"]["tiny"]["chosen_by"] == "fallback" and section["sites"]["tiny"]["threshold"] == 0.5
    )
    assert section["sites"]["low"]["calibration"]["kind"] == "platt"
    md = operating_point_markdown(section)
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| site")]
    assert [r.split(" | ")[0] for r in rows] == ["| centred", "| low", "| tiny"]
    assert "| youden -> 0.5 | 0.500 | none |" in rows[2]
    assert "platt (a " in rows[1]
    assert "- **The 0.5 threshold would have failed low**: at 0.5 its test sensitivity" in md
    assert "would have failed centred" not in md and "would have failed tiny" not in md
    assert "- tiny: the validation split holds" in md and "floor (0.5)" in md


def test_run_report_gains_the_section_in_json_and_markdown(tmp_path) -> None:
    report = build_report("cxr_fedavg", _record(), _cross())
    assert report["operating_point"]["half_failed"].keys() == {"low"}
    md = to_markdown(report)
    assert (
        md.index("## Per-site validation")
        < md.index("## Operating point")
        < md.index("would have failed low")
    )
    write_report(report, tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert (
        saved["operating_point"]["sites"]["low"]["threshold"]
        == report["operating_point"]["sites"]["low"]["threshold"]
    )
    assert "## Operating point" in (tmp_path / "report.md").read_text()


def test_old_results_without_the_key_render_without_the_section() -> None:
    report = build_report("cxr_fedavg", _record(), _cross(with_key=False))
    assert report["operating_point"] is None
    md = to_markdown(report)
    assert "Operating point" not in md and "## Per-site validation" in md
    assert operating_point_section({}, None) is None and operating_point_markdown(None) == ""
