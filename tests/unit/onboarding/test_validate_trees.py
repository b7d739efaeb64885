"""validate-site for a tree job: its xgboost_model.json, its schema (imputation none), the site's export.

The federation is :mod:`ehr_job`'s three synthetic hospitals, aligned for trees and trained with
XGBoost on their pooled rows; the new hospitals are the same exports as in the network tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from ehr_job import tree_federation, write_site, write_tree_result

from fedhealth.onboarding.artifacts import OnboardingError
from fedhealth.onboarding.tabular_case import TREE_FINETUNE_ROUNDS
from fedhealth.onboarding.tabular_inputs import load_model
from fedhealth.onboarding.validate_site import (
    DECISION_DEPLOY,
    DECISION_NOT_FIT,
    format_report,
    validate_site,
)
from fedhealth.trees.model import MODEL_FILE, TreeModel

N_BOOTSTRAP = 200


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tree_job")
    schema, model = tree_federation()
    return {
        "result": write_tree_result(root / "result", schema, model),
        "site": write_site(root / "site", 300),
        "shifted": write_site(root / "shifted", 300, seed=8, shifted=True, flaws=False),
    }


def _run(job: dict, site: str, **kwargs: object) -> dict:
    return validate_site(  # type: ignore[arg-type]
        n_bootstrap=N_BOOTSTRAP, model_path=None, data_dir=job[site], schema_path=job["result"], **kwargs
    )


def test_a_result_folder_with_a_tree_model_gives_the_tree_model(job: dict, tmp_path: Path) -> None:
    model = load_model(job["result"])
    assert isinstance(model, TreeModel) and model.n_trees == 20
    bad = tmp_path / MODEL_FILE
    bad.write_text("{}")
    with pytest.raises(OnboardingError, match=f"{MODEL_FILE}: the tree model is not a readable XGBoost"):
        load_model(bad)


def test_the_tree_model_is_judged_on_the_sites_own_export(job: dict) -> None:
    result = _run(job, "site", threshold=0.6)
    assert result["decision"] == DECISION_DEPLOY and result["fine_tuned"] is None
    assert 0.6 <= result["global"]["lo"] <= result["global"]["value"] <= 1.0
    report = format_report(result)
    # The site does not record BNP: a tree model takes it as missing, it imputes nothing.
    assert (
        "note: feature 'bnp' is not recorded here: the model takes it as missing for all 300 patients "
        "(each tree sends a missing value down its learned default branch)" in report
    )


def test_a_hospital_that_differs_gets_a_tree_model_grown_on_its_rows(job: dict, tmp_path: Path) -> None:
    out = tmp_path / "tuned" / MODEL_FILE
    result = _run(job, "shifted", threshold=0.7, finetuned_model_path=out)
    assert result["global"]["value"] < 0.5  # the federation's trees rank this population the wrong way
    assert result["fine_tuning"] == {"boosting_rounds": TREE_FINETUNE_ROUNDS, "eta": 0.1}
    assert result["global"]["value"] == pytest.approx(0.377, abs=0.001)
    assert result["fine_tuned"]["value"] == pytest.approx(0.771, abs=0.001)  # 10 trees on its own rows
    # ... but the lower bound (0.696) stays below 0.7: grown trees do not clear this site
    assert result["decision"] == DECISION_NOT_FIT
    assert f"[{TREE_FINETUNE_ROUNDS} more trees, eta 0.1]" in format_report(result)
    tuned = xgb.Booster()
    tuned.load_model(str(out))  # saved in XGBoost's own JSON format
    assert tuned.num_boosted_rounds() == 20 + TREE_FINETUNE_ROUNDS
    unknown = xgb.DMatrix(np.full((2, tuned.num_features()), np.nan), feature_names=tuned.feature_names)
    assert np.isfinite(tuned.predict(unknown)).all()  # a patient with nothing recorded still gets a score
