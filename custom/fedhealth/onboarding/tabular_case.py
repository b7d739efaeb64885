"""A heart or tabular job's case for ``validate-site``: its network (or tree model) and the site's rows.

The site's encoded rows, the model's scoring and fine-tuning (SGD, batch 4, for a network; 10 more
trees at eta 0.1 for a tree job's XGBoost model), handed to :func:`fedhealth.onboarding.decision.judge`.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from fedhealth.data.features import encode
from fedhealth.onboarding.artifacts import (
    OnboardingError,
    find_scaling,
    load_global_model,
    load_scaling,
    read_site_rows,
)
from fedhealth.onboarding.decision import SiteCase, save_torch
from fedhealth.onboarding.tabular_inputs import load_tabular_inputs
from fedhealth.training.loops import LocalTrainConfig, predict, train_local
from fedhealth.trees.model import TreeModel, boost_more

FINETUNE_BATCH = 4
# A tree job's model fine-tunes by growing this many more trees, at this learning rate, on the site's rows.
TREE_FINETUNE_ROUNDS = 10
TREE_FINETUNE_ETA = 0.1


def tabular_case(
    *,
    model_path: Path | None,
    data_dir: Path,
    scaling_path: Path | None,
    schema_path: Path | None,
    dictionary_path: Path | None,
    finetune_epochs: int,
    finetune_lr: float,
) -> SiteCase:
    """A heart or tabular job's case: its network (or tree model) and the site's encoded rows."""
    extra: dict = {}
    if schema_path is not None or dictionary_path is not None:
        if scaling_path is not None:
            raise ValueError("--scaling is a heart job's global scaling; a tabular job's is in its --schema")
        job = load_tabular_inputs(
            data_dir=Path(data_dir),
            model_path=model_path,
            schema_path=schema_path,
            dictionary_path=dictionary_path,
        )
        model, x, y, files = job.model, job.x, job.rows.labels, job.rows.files
        extra = {
            "outcome": job.dictionary.target,
            "data_report": [line for r in job.rows.reports for line in r.lines_out()],
            "schema_notes": job.notes,
        }
    else:
        if model_path is None:
            raise OnboardingError("no model: pass --model (the job's FL_global_model.pt)")
        model = load_global_model(Path(model_path))
        scaling_file = Path(scaling_path) if scaling_path is not None else find_scaling(Path(model_path))
        scaler, chol_missing = load_scaling(scaling_file, n_features=model.in_features)
        rows, files = read_site_rows(Path(data_dir))
        x = scaler.transform(encode(rows.features, chol_zero_as_missing=chol_missing))
        y = rows.labels
    tree = isinstance(model, TreeModel)

    def fine_tune(model, x_tune: np.ndarray, y_tune: np.ndarray, seed: int) -> tuple[object, dict]:
        if tree:  # trees fine-tune by growing more trees on the site's rows
            tuned = boost_more(model, x_tune, y_tune, rounds=TREE_FINETUNE_ROUNDS, eta=TREE_FINETUNE_ETA)
            return tuned, {"boosting_rounds": TREE_FINETUNE_ROUNDS, "eta": TREE_FINETUNE_ETA}
        tuned = copy.deepcopy(model)
        config = LocalTrainConfig(lr=finetune_lr, batch_size=FINETUNE_BATCH, local_epochs=finetune_epochs)
        train_local(tuned, x_tune, y_tune, config, generator=torch.Generator().manual_seed(seed))
        return tuned, {"epochs": finetune_epochs, "lr": finetune_lr, "batch_size": FINETUNE_BATCH}

    return SiteCase(
        model=model,
        x=x,
        y=y,
        targets=np.asarray(y, dtype=float).reshape(-1, 1),
        scores=predict,
        fine_tune=fine_tune,
        files=files,
        strata=y,
        extra=extra,
        save=_save_tree if tree else save_torch,
    )


def _save_tree(model: TreeModel, path: Path) -> None:
    """XGBoost's own JSON format, as the job exports it."""
    Path(path).write_bytes(model.model_json)
