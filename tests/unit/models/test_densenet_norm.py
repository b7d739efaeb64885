"""DenseNet-121's ``norm`` option: BatchNorm names kept; GroupNorm accepted by Opacus, trained with DP."""

from __future__ import annotations

import numpy as np
import pytest
from opacus.validators import ModuleValidator
from torch import nn

from fedhealth.models.cnn import GROUPS, build_image_model
from fedhealth.models.image_model import ImageModel, load_image_weights
from fedhealth.privacy.dp_config import DPConfig
from fedhealth.privacy.dp_sgd import PrivateTrainer, make_dp_compatible
from fedhealth.tasks.imaging import ImagingTask

# MONAI 1.6's DenseNet-121, one input channel, one output: its trainable weights (both norms: a
# GroupNorm has a BatchNorm's affine weight and bias), and its state entries (BatchNorm adds
# running mean, variance and batch count to each of its 121 norm layers).
DENSENET121_PARAMETERS = 6_948_609
BATCH_STATE_ENTRIES, GROUP_STATE_ENTRIES = 727, 364


def test_batch_version_keeps_monai_weight_names_and_sizes() -> None:
    model = ImageModel("densenet121", 1, 1)
    plain = build_image_model("densenet121")
    assert list(model.state_dict()) == [f"net.{k}" for k in plain.state_dict()]
    assert len(model.state_dict()) == BATCH_STATE_ENTRIES
    assert "net.features.norm0.running_mean" in model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == DENSENET121_PARAMETERS


def test_group_version_has_groupnorm_only_and_the_same_trainable_weights() -> None:
    model = ImageModel("densenet121", 1, 1, norm="group")
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 121 and {m.num_groups for m in norms} == {GROUPS}
    assert not any(getattr(m, "inplace", False) for m in model.modules())
    assert len(model.state_dict()) == GROUP_STATE_ENTRIES
    assert sum(p.numel() for p in model.parameters()) == DENSENET121_PARAMETERS


def test_opacus_accepts_the_group_version_unchanged() -> None:
    model = ImageModel("densenet121", 1, 1, norm="group").train()
    assert ModuleValidator.validate(model, strict=False) == []
    fixed, changes = make_dp_compatible(model)
    assert fixed is model and changes == []  # the server's model is the site's DP model
    batch = ImageModel("densenet121", 1, 1).train()
    assert len(ModuleValidator.validate(batch, strict=False)) == 121  # every BatchNorm refused


def test_a_dp_sgd_step_runs_on_the_group_version_and_changes_the_weights() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(16, 1, 32, 32)).astype(np.float32)
    y = (np.arange(16) % 2).astype(np.float32)
    model = ImageModel("densenet121", 1, 1, norm="group")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dp = DPConfig(target_epsilon=5.0, delta=1e-3, max_grad_norm=1.0, allow_small_batch=True)
    trainer = PrivateTrainer(model, x, y, dp, batch_size=8, steps_per_round=1, rounds=2, seed=0)
    stats = trainer.train_round(model, lr=0.01, round_index=0)
    assert trainer.changes == [] and stats["steps"] == 1.0 and np.isfinite(stats["train_loss"])
    assert 0 < trainer.epsilon < 5.0
    changed = [k for k, v in model.state_dict().items() if not (v == before[k]).all()]
    assert len(changed) > 300  # the step reached the network (every weight with a gradient)
    # and the weights fit a server model built from the same job config
    load_image_weights(ImageModel("densenet121", 1, 1, norm="group"), model.state_dict())


def test_group_weights_do_not_load_into_the_batch_version() -> None:
    group = ImageModel("densenet121", 1, 1, norm="group").state_dict()
    with pytest.raises(ValueError, match=r"densenet121 \(batch norm\).*missing"):
        load_image_weights(ImageModel("densenet121", 1, 1), group)


@pytest.mark.parametrize(
    ("arch", "norm", "message"),
    [
        ("densenet121", "layer", r"norm must be one of \('batch', 'group'\), not 'layer'"),
        ("small_cnn", "group", "norm 'group' applies to densenet121 only; small_cnn has no normalization"),
    ],
)
def test_bad_norms_are_refused_by_model_and_task(arch: str, norm: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ImageModel(arch, 1, 1, norm=norm)
    with pytest.raises(ValueError, match=message):
        ImagingTask(model=arch, image_size=32, norm=norm)


def test_task_builds_the_model_its_norm_names() -> None:
    task = ImagingTask(model="densenet121", image_size=32, norm="group", mixed_precision=False)
    model = task.build_model(site=None)
    assert model.norm == "group" and not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert task.model_from_weights(model.state_dict(), site=None).norm == "group"
    with pytest.raises(ValueError, match="mixed_precision must be true or false, got 'yes'"):
        ImagingTask(mixed_precision="yes")  # type: ignore[arg-type]
