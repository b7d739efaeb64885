"""Tabular sites in the in-process loop: the alignment goes through each site's own profile task, a
pooled site takes the federation's schema, row subsets keep their rows, and the loop trains them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fedhealth.ehr.alignment import AlignmentPolicy
from fedhealth.ehr.mapping import SiteMapping
from fedhealth.tasks.tabular import TabularSite, TabularTask
from fedhealth_tools.federation.ehr import (
    PrealignedTabularTask,
    align_sites,
    concat,
    job_alignment_policy,
    pooled_site,
    take,
)
from fedhealth_tools.federation.loop import run_loop
from fedhealth_tools.jobs.spec import SPECS_DIR

DICTIONARY = {
    "name": "toy",
    "version": 1,
    "target": {"name": "disease"},
    "features": [
        {"name": "age", "kind": "numeric", "unit": "year", "range": [18, 100]},
        {"name": "sex", "kind": "binary"},
        {"name": "smoker", "kind": "binary"},  # recorded at one site only: the union policy drops it
    ],
}
MAPPING = SiteMapping.from_dict(
    {"missing_tokens": ["NA"], "target": {"column": "y", "positive": ["1"], "negative": ["0"]}}
)


def _frame(seed: int, n: int, *, smoker: bool, age_missing: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(30, 80, n).astype(str)
    age[:age_missing] = "NA"
    frame = pd.DataFrame({"age": age, "sex": rng.integers(0, 2, n).astype(str), "y": ["0", "1"] * (n // 2)})
    if smoker:
        frame["smoker"] = rng.integers(0, 2, n).astype(str)
    return frame


def _sites() -> list[TabularSite]:
    task = TabularTask(dictionary=DICTIONARY)
    specs = [("a", 40, True, 0), ("b", 30, False, 6), ("c", 20, False, 0)]
    return [
        task.site_from_frames(
            name, _frame(i, n, smoker=s, age_missing=m), _frame(10 + i, 10, smoker=s, age_missing=0), MAPPING
        )
        for i, (name, n, s, m) in enumerate(specs)
    ]


def test_align_sites_sends_every_site_the_schema_from_their_profiles() -> None:
    sites = _sites()
    schema = align_sites(sites, AlignmentPolicy())
    assert schema["columns"] == ["age", "age_missing", "sex"]
    assert [d["name"] for d in schema["dropped"]] == ["smoker"]
    assert schema["rows"] == 90
    ages = pd.concat([s.train_table.features["age"] for s in sites]).dropna()
    assert schema["mean"][0] == pytest.approx(ages.mean())
    assert schema["mean"][1] == pytest.approx(6 / 90)
    assert schema["sites"]["b"]["features"]["age"] == {"present": 24, "missing": 6}
    for site in sites:
        assert site.schema == schema
        assert site.arrays("train")[0].shape == (site.n_train, 3)


def test_align_sites_needs_a_site() -> None:
    with pytest.raises(ValueError, match="at least one site"):
        align_sites([], AlignmentPolicy())


def test_take_keeps_the_rows_asked_for_and_rejects_others() -> None:
    table = _sites()[0].train_table
    part = take(table, np.array([3, 0]))
    assert part.labels.tolist() == [table.labels[3], table.labels[0]]
    assert part.features["age"].tolist() == [table.features["age"][3], table.features["age"][0]]
    assert list(part.features.index) == [0, 1]
    with pytest.raises(IndexError, match=r"\[0, 40\)"):
        take(table, np.array([40]))


def test_pooled_site_holds_every_row_under_the_federation_schema() -> None:
    sites = _sites()
    schema = align_sites(sites, AlignmentPolicy())
    pooled = pooled_site(sites, schema)
    assert pooled.n_train == 90 and len(pooled.test_table) == 30
    assert pooled.schema == schema
    x, y = pooled.arrays("train")
    np.testing.assert_array_equal(x, np.concatenate([s.arrays("train")[0] for s in sites]))
    np.testing.assert_array_equal(y, np.concatenate([s.arrays("train")[1] for s in sites]))
    with pytest.raises(ValueError, match="no site"):
        pooled_site([], schema)
    with pytest.raises(ValueError, match="no table"):
        concat([], label="pooled/train")


def test_the_loop_trains_prealigned_sites_and_a_pooled_one() -> None:
    sites = _sites()
    schema = align_sites(sites, AlignmentPolicy())
    task = PrealignedTabularTask(dictionary=DICTIONARY)
    assert task.steps == () and task.name == "tabular"
    local = {"batch_size": 8, "local_epochs": 1}
    for train_on in (sites, [pooled_site(sites, schema)]):
        model = task.build_model(train_on[0], seed=0)
        before = [p.detach().clone() for p in model.parameters()]
        result = run_loop(task, train_on, model, rounds=2, lr=0.1, local=local)
        assert len(result.rounds) == 2
        assert any(
            not np.allclose(a, b.detach()) for a, b in zip(before, result.model.parameters(), strict=True)
        )


def test_job_alignment_policy_reads_the_controller_args_of_a_job() -> None:
    spec = {
        "server": {
            "workflows": [
                {"id": "other", "path": "x.Y", "args": {"min_cell": 99}},
                {
                    "id": "alignment",
                    "path": "fedhealth.workflows.ehr_alignment_controller.EhrAlignmentController",
                    "args": {"min_clients": 4, "mode": "intersection", "min_cell": 7, "indicators": False},
                },
            ]
        }
    }
    assert job_alignment_policy(spec) == AlignmentPolicy(mode="intersection", min_cell=7, indicators=False)
    with pytest.raises(ValueError, match="heart.json names 0 EhrAlignmentController"):
        job_alignment_policy({"workflows": []}, label="heart.json")


def test_the_shipped_heart_spec_has_one_alignment_policy() -> None:
    spec = json.loads((SPECS_DIR / "heart.json").read_text())
    policy = job_alignment_policy(spec)
    assert (policy.mode, policy.imputation, policy.indicators) == ("union", "mean", True)
