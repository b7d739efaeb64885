"""The run report: per-site table, test-size-weighted global figures, report files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedhealth.reports.run_report import build_report, find_run_files, site_table, write_report
from fedhealth.reports.summary import round_summary, weighted_mean

# site -> (n_train, n_test, final accuracy, final AUC); Switzerland's AUC undefined (one class).
SITES = {
    "cleveland": (199, 104, 0.80, 0.88),
    "hungary": (172, 89, 0.75, 0.83),
    "switzerland": (30, 16, 0.50, None),
    "va_long_beach": (85, 45, 0.60, 0.70),
}
ROUNDS = 3
# (values, weights, expected)
MEAN_CASES = [
    ({"a": 1.0, "b": 0.0}, {"a": 3.0, "b": 1.0}, 0.75),
    ({"a": 1.0, "b": None}, {"a": 3.0, "b": 1.0}, 1.0),
    ({"a": None}, {"a": 1.0}, None),
    ({"a": 0.5}, {}, None),
]


def _record() -> dict:
    rounds = []
    for r in range(ROUNDS):
        sites = {
            s: {"n_train": n_train, "n_test": n_test, "global_accuracy": 0.5 + 0.1 * r, "global_auc": 0.6}
            for s, (n_train, n_test, _, _) in SITES.items()
        }
        rounds.append({"round": r, "sites": sites, **round_summary(sites)})
    return {"job_id": "abc-123", "rounds": rounds, "failures": []}


def _cross() -> dict:
    cross = {}
    for s, (_, n_test, acc, auc) in SITES.items():
        cross[s] = {
            "SRV_server": {"accuracy": acc, "auc": auc, "n_test": n_test},
            s: {"accuracy": acc - 0.1, "auc": auc},
        }
    return cross


def _expected_accuracy() -> float:
    return sum(n_test * acc for _, n_test, acc, _ in SITES.values()) / sum(v[1] for v in SITES.values())


@pytest.mark.parametrize(("values", "weights", "expected"), MEAN_CASES)
def test_weighted_mean(values: dict, weights: dict, expected: float | None) -> None:
    assert weighted_mean(values, weights) == (None if expected is None else pytest.approx(expected))


def test_build_report_global_accuracy_is_test_weighted() -> None:
    report = build_report("heart_fedavg", _record(), _cross())
    assert report["job"] == "heart_fedavg" and report["job_id"] == "abc-123"
    assert report["rounds"] == ROUNDS and len(report["history"]) == ROUNDS
    assert [s["name"] for s in report["sites"]] == sorted(SITES)
    for s in report["sites"]:
        n_train, n_test, acc, auc = SITES[s["name"]]
        assert (s["n_train"], s["n_test"], s["accuracy"], s["auc"]) == (n_train, n_test, acc, auc)
    g = report["global"]
    assert g["model"] == "SRV_server"
    assert g["accuracy"] == pytest.approx(_expected_accuracy())
    assert g["accuracy"] == pytest.approx((104 * 0.8 + 89 * 0.75 + 16 * 0.5 + 45 * 0.6) / 254)
    assert g["auc"] == pytest.approx((104 * 0.88 + 89 * 0.83 + 45 * 0.70) / (104 + 89 + 45))
    assert g["client_avg_accuracy"] == pytest.approx(0.6625)
    assert g["worst_site_accuracy"] == 0.5
    assert [h["global_accuracy"] for h in report["history"]] == pytest.approx([0.5, 0.6, 0.7])
    assert report["cross_site"]["hungary"] == {"SRV_server": 0.75, "hungary": pytest.approx(0.65)}


def test_site_table_has_global_row() -> None:
    table = site_table(build_report("heart_fedavg", _record(), _cross()))
    lines = table.splitlines()
    assert lines[0] == "| site | n_train | n_test | accuracy | AUC |"
    assert len(lines) == 2 + len(SITES) + 1 + 2
    assert "| switzerland | 30 | 16 | 0.500 | n/a |" in lines
    global_auc = build_report("j", _record(), _cross())["global"]["auc"]
    assert lines[-3] == f"| **global** | 486 | 254 | {_expected_accuracy():.3f} | {global_auc:.3f} |"
    # The global AUC is said to be what it is: a weighted mean of the sites' AUCs, not a pooled AUC.
    assert lines[-1] == (
        "global row: accuracy over all sites' test patients; AUC = size-weighted mean of site AUCs "
        "(weights: test sizes), not a pooled AUC."
    )


def test_write_report_files(tmp_path: Path) -> None:
    report = build_report("heart_fedprox", _record(), _cross())
    paths = write_report(report, tmp_path / "out", seconds=42.0)
    assert [p.name for p in paths] == [
        "report.json",
        "report.md",
        "rounds.png",
        "site_metrics.png",
        "site_curves.png",
        "cross_site.png",
    ]
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["job"] == "heart_fedprox" and data["rounds"] == ROUNDS and data["seconds"] == 42.0
    assert len(data["sites"]) == 4
    for site in data["sites"]:
        assert {"name", "n_train", "n_test", "accuracy", "auc"} <= set(site)
    assert data["global"]["accuracy"] == pytest.approx(_expected_accuracy())
    assert "auc" in data["global"]
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "# fedhealth run report: heart_fedprox" in markdown
    assert site_table(report) in markdown
    assert "3 rounds, 4 sites, 42 s end to end." in markdown
    png = (tmp_path / "out" / "rounds.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_failures_are_listed(tmp_path: Path) -> None:
    record = {**_record(), "failures": [{"site": "hungary", "task": "train", "reason": "no column 'chol'"}]}
    write_report(build_report("j", record, _cross()), tmp_path)
    assert "- hungary (train): no column 'chol'" in (tmp_path / "report.md").read_text()


def test_find_run_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="fedhealth_run.json"):
        find_run_files(tmp_path)
    (tmp_path / "workspace" / "cross_site_val").mkdir(parents=True)
    (tmp_path / "workspace" / "fedhealth_run.json").write_text(json.dumps(_record()))
    assert find_run_files(tmp_path) == (_record(), {})
    (tmp_path / "workspace" / "cross_site_val" / "cross_val_results.json").write_text(json.dumps(_cross()))
    assert find_run_files(tmp_path)[1] == _cross()
