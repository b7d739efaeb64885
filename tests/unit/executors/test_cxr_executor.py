"""SiteExecutor on the imaging task with FLARE's own FLContext, Workspace, DXO, Shareable; real DICOM.

As in the heart executor's test, the engine is a stand-in offering ``get_workspace()``; the full
path runs in the POC integration test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from flare_doubles import site_context
from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.shareable import Shareable
from nvflare.apis.signal import Signal
from nvflare.app_common.app_constant import AppConstants
from site_args import cxr

from fedhealth import constants as C
from fedhealth.executors.site_executor import SiteExecutor
from fedhealth.models.image_model import ImageModel
from fedhealth.models.state import to_numpy
from fedhealth_tools.imaging.converter import convert_medmnist
from fedhealth_tools.imaging.synthetic import write_synthetic_npz, write_synthetic_site

JOB_ID = "job-1"
SITE = "north"
N = 24  # images per split in the synthetic site
# (executor args, the site's settings, fragment of the failure every task reports)
START_FAILURES = [
    ({}, {"identified": True}, "carry identifying attributes: PatientID (24), PatientName (24)"),
    ({"min_images": 30}, {}, "only 24 usable DICOM images, fewer than the minimum of 30"),
    (
        {},
        {"settings": {C.SITE_REQUIRE_DEIDENTIFIED_KEY: "no"}},
        "'require_deidentified' must be true or false",
    ),
]
BAD_ARGS = [
    ({"model": "resnet50"}, "arch must be one of"),
    ({"model": "densenet121", "image_size": 28}, "densenet121 needs image_size of at least 32"),
    ({"label_task": "multiclass", "classes": ["a"]}, "needs at least two class names"),
    ({"mu": -1.0}, "fedprox mu must be non-negative"),
    ({"min_images": 0}, "min_images must be at least 1"),
    (
        {"classes": ["normal", "pneumonia"], "positive_class": "sick"},
        "'sick' is not one of the binary classes",
    ),
]


def _started(
    tmp_path: Path,
    *,
    identified: bool = False,
    settings: dict | None = None,
    data: Path | None = None,
    **kwargs,
):
    kit = tmp_path / SITE
    (kit / "startup").mkdir(parents=True)
    (kit / "local").mkdir()
    (kit / "local" / C.SITE_CONFIG_FILE).write_text(
        json.dumps({C.SITE_DATA_ROOT_KEY: str(data) if data else "pacs", **(settings or {})})
    )
    if data is None:
        write_synthetic_site(kit / "pacs", n=N, identified=identified)
    fl_ctx = site_context(kit, SITE, JOB_ID)
    executor = SiteExecutor(**cxr(**{"stream_metrics": False, "n_bootstrap": 50, **kwargs}))
    executor.handle_event(EventType.START_RUN, fl_ctx)
    return executor, fl_ctx, kit


def _task(lr: float | None = 0.003, round_index: int = 0, **model_args) -> Shareable:
    meta = {} if lr is None else {C.META_LEARNING_RATE: lr}
    shareable = DXO(DataKind.WEIGHTS, data=to_numpy(ImageModel(**model_args)), meta=meta).to_shareable()
    shareable.set_header(AppConstants.CURRENT_ROUND, round_index)
    return shareable


def _run(executor, task: str, fl_ctx, shareable: Shareable | None = None) -> Shareable:
    return executor.execute(task, shareable if shareable is not None else Shareable(), fl_ctx, Signal())


def test_train_returns_weights_weighted_by_images_and_validation_figures(tmp_path: Path) -> None:
    executor, fl_ctx, kit = _started(tmp_path, local_epochs=3, batch_size=16)
    sent = _task(round_index=2)
    reply = _run(executor, C.TASK_TRAIN, fl_ctx, sent)
    assert reply.get_return_code(ReturnCode.OK) == ReturnCode.OK
    dxo = from_shareable(reply)
    assert dxo.data_kind == DataKind.WEIGHTS and set(dxo.data) == set(from_shareable(sent).data)
    assert dxo.get_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND) == N
    assert dxo.get_meta_prop(C.META_LOCAL_STEPS) == 3 * 2  # ceil(24 / 16) batches, three epochs
    metrics = dxo.get_meta_prop(C.META_SITE_METRICS)
    assert metrics["round"] == 2 and metrics[C.M_N_TRAIN] == N and metrics[C.M_N_QUARANTINED] == 0
    assert metrics[C.M_LOCAL_LOSS] < metrics["global_loss"] and metrics[C.M_IMAGES_PER_S] > 0
    quarantine = json.loads((kit / JOB_ID / C.QUARANTINE_REPORT_FILE).read_text())
    assert set(quarantine) == {"train", "val", "test"} and quarantine["train"]["phi"]["n_identified"] == 0
    # submit_model hands back the same local weights for cross-site evaluation
    submitted = from_shareable(_run(executor, C.TASK_SUBMIT_MODEL, fl_ctx))
    for key, value in dxo.data.items():
        np.testing.assert_array_equal(submitted.data[key], value)


def test_validate_returns_the_heart_jobs_metric_keys_with_intervals(tmp_path: Path) -> None:
    executor, fl_ctx, _ = _started(tmp_path)
    reply = _run(executor, C.TASK_VALIDATE, fl_ctx, _task())
    data = from_shareable(reply).data
    assert {C.M_ACCURACY, C.M_AUC, C.M_LOSS, C.M_INTERVALS, C.M_N_TRAIN, C.M_N_TEST} <= set(data)
    assert data[C.M_N_TEST] == N and data[C.M_INTERVALS]["n"] == N and data[C.M_INTERVALS]["n_pos"] == N // 2
    assert data[C.M_INTERVALS]["auc"]["value"] == pytest.approx(data[C.M_AUC])


def test_validate_names_the_positive_class_and_flips_the_labels_when_it_is_stored_as_0(
    tmp_path: Path,
) -> None:
    sent = _task()  # the same weights at both sites
    results = {}
    for positive in ("pneumonia", "normal"):  # the synthetic site stores pneumonia as 1
        args = {"classes": ["normal", "pneumonia"], "positive_class": positive}
        executor, fl_ctx, _ = _started(tmp_path / positive, **args)
        results[positive] = from_shareable(_run(executor, C.TASK_VALIDATE, fl_ctx, sent)).data
    assert [results[p][C.M_POSITIVE_CLASS] for p in ("pneumonia", "normal")] == ["pneumonia", "normal"]
    assert results["normal"][C.M_AUC] == pytest.approx(1.0 - results["pneumonia"][C.M_AUC])
    assert results["normal"][C.M_AUC] != pytest.approx(0.5, abs=1e-3)  # a flip that shows


def test_a_model_of_another_architecture_fails_the_task_with_the_reason(tmp_path: Path) -> None:
    executor, fl_ctx, _ = _started(tmp_path)
    reply = _run(executor, C.TASK_TRAIN, fl_ctx, _task(num_classes=3))
    assert reply.get_return_code() == ReturnCode.EXECUTION_EXCEPTION
    assert "do not fit this site's small_cnn" in reply.get_header(C.HEADER_ERROR)
    reply = _run(executor, C.TASK_TRAIN, fl_ctx, _task(lr=None))
    assert "carries no learning rate" in reply.get_header(C.HEADER_ERROR)
    assert _run(executor, "training", fl_ctx).get_return_code() == ReturnCode.TASK_UNKNOWN


@pytest.mark.parametrize(("kwargs", "site", "fragment"), START_FAILURES)
def test_unusable_site_data_fails_every_task_naming_why(tmp_path: Path, kwargs, site, fragment) -> None:
    executor, fl_ctx, _ = _started(tmp_path, **site, **kwargs)
    for task in (C.TASK_TRAIN, C.TASK_VALIDATE):
        reply = _run(executor, task, fl_ctx, _task())
        assert reply.get_return_code() == ReturnCode.EXECUTION_EXCEPTION
        header = reply.get_header(C.HEADER_ERROR)
        assert header.startswith(f"site {SITE} failed task {task!r}") and fragment in header
        assert "Doe" not in header and "MRN" not in header


@pytest.mark.parametrize(("kwargs", "fragment"), BAD_ARGS)
def test_bad_job_arguments_fail_at_construction(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        SiteExecutor(**cxr(**kwargs))
    assert fragment in str(info.value)


def test_the_job_config_runs_the_rgb_five_class_retina_set_by_configuration_alone(tmp_path: Path) -> None:
    npz = write_synthetic_npz(
        tmp_path / "retinamnist.npz", n=80, n_classes=5, channels=3
    )  # RetinaMNIST's shape
    job = (
        Path(__file__).resolve().parents[3]
        / "jobs"
        / "cxr_fedavg"
        / "app"
        / "config"
        / "config_fed_client.json"
    )
    job_args = json.loads(job.read_text())["executors"][0]["executor"]["args"]
    args = {**job_args["task_args"], **{k: v for k, v in job_args.items() if k not in ("task", "task_args")}}
    args.pop("algorithms")
    manifest = convert_medmnist(npz, tmp_path / "sites", sites=[SITE], alpha=1.0, seed=0, limit=80)
    classes = manifest["classes"]
    args.update(label_task="multiclass", classes=classes, positive_class="", channels=3, min_images=5)
    args.update(n_bootstrap=50)
    executor, fl_ctx, _ = _started(tmp_path / "kit", **args, data=tmp_path / "sites" / SITE)
    reply = _run(executor, C.TASK_TRAIN, fl_ctx, _task(in_channels=3, num_classes=5))
    assert reply.get_return_code(ReturnCode.OK) == ReturnCode.OK
    weights = from_shareable(reply).data
    assert weights["net.head.3.weight"].shape == (5, 64) and weights["net.features.0.weight"].shape[1] == 3
    data = from_shareable(_run(executor, C.TASK_VALIDATE, fl_ctx, reply)).data
    assert set(data[C.M_PER_LABEL_AUC]) == set(classes) and data[C.M_N_TEST] == 80
    assert 0.0 <= data[C.M_ACCURACY] <= 1.0 and data[C.M_INTERVALS]["n"] == 80


# (executor args, the site's own settings, learning rate, the reason or None when it trains)
LIMIT_CASES = [
    ({"batch_size": 8}, {}, 0.003, "batch_size 8 is below this site's min_batch_size 16"),
    ({"batch_size": 8}, {"limits": {"min_batch_size": 8}}, 0.003, None),  # the site's own lower floor
    ({"batch_size": 16}, {}, 3.0, "learning rate 3 is above this site's max_learning_rate 1"),
    (
        {"batch_size": 16, "local_steps": 1},
        {"limits": {"min_examples_per_round": 20}},
        0.003,
        "mix 16 patients",
    ),
]


@pytest.mark.parametrize(("args", "settings", "lr", "reason"), LIMIT_CASES)
def test_the_site_limits_apply_to_image_jobs(
    tmp_path: Path, args: dict, settings: dict, lr: float, reason
) -> None:
    executor, fl_ctx, _ = _started(tmp_path, settings=settings, **args)
    reply = _run(executor, C.TASK_TRAIN, fl_ctx, _task(lr=lr))
    if reason is None:
        assert reply.get_return_code(ReturnCode.OK) == ReturnCode.OK
    else:
        assert reply.get_return_code() == ReturnCode.EXECUTION_EXCEPTION
        assert reason in reply.get_header(C.HEADER_ERROR) and "site policy: " in reply.get_header(
            C.HEADER_ERROR
        )
