"""The run record's one definition: a new record, loading one, and what the report reads from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedhealth import constants as C
from fedhealth.reports.plots import rounds_ylabel
from fedhealth.reports.run_record import M_EVAL_SPLIT, eval_split, had_task, load_record, new_record

HEART = {"global_auc": 0.8, C.M_N_TEST: 10}
IMAGING = {"global_auc": 0.8, C.M_N_TEST: 10, C.M_IMAGES_PER_S: 900.0}
# (each site's round metrics, the split the report names): the split the sites sent wins; records
# from before executors sent it fall back on the executor's known split; sites that disagree: None.
SPLIT_CASES = [
    ({"a": {**HEART, M_EVAL_SPLIT: "val"}, "b": {**HEART, M_EVAL_SPLIT: "val"}}, "val"),
    ({"a": {**IMAGING, M_EVAL_SPLIT: "test"}}, "test"),
    ({"a": HEART, "b": HEART}, "test"),
    ({"a": IMAGING}, "val"),
    ({"a": {**HEART, M_EVAL_SPLIT: "val"}, "b": {**HEART, M_EVAL_SPLIT: "test"}}, None),
    ({}, None),
]


@pytest.mark.parametrize(("sites", "split"), SPLIT_CASES)
def test_eval_split_is_what_the_sites_said(sites: dict, split: str | None) -> None:
    record = new_record("j", {"primary_metric": "auc", "threshold": 0.75, "flag_sd": 2.0})
    record["rounds"] = [{"round": 0, "sites": sites}]
    assert eval_split(record) == split
    assert rounds_ylabel(split) == (
        f"{split} metric, all sites" if split else "metric, all sites (split not recorded)"
    )


def test_new_record_and_load(tmp_path: Path) -> None:
    record = new_record("job-1", {"primary_metric": "auc", "threshold": 0.7, "flag_sd": 2.0})
    assert record["status"] == "running" and record["failures"] == [] and record["tasks"] == []
    assert not had_task(record, C.TASK_FED_STATS)
    record["tasks"].append(C.TASK_FED_STATS)
    assert had_task(record, C.TASK_FED_STATS)
    path = tmp_path / C.RUN_RECORD_FILE
    path.write_text(json.dumps(record))
    assert load_record(path) == record
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object, not list"):
        load_record(path)
