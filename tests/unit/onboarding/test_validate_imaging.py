"""validate-site for an imaging job: a cxr job result, a new hospital's DICOM folder and label table.

The bundled PneumoniaMNIST is converted into two DICOM sites (the kit's converter, each with its own
scanner); a small_cnn trained briefly on the first site's training images is saved as a cxr_fedavg
result (the real job folder beside it). The second site's test images, spread over nested folders,
are the new hospital. A multi-label variant adds a finding with coin-flip labels (synthetic, so the
model cannot learn it) to show the per-finding gate.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import torch

from fedhealth.imaging.labels import LabelSpec
from fedhealth.imaging.loops import train_images
from fedhealth.imaging.phi_audit import PhiError
from fedhealth.imaging.site import PipelineSettings, load_split
from fedhealth.models.image_model import ImageModel
from fedhealth.onboarding.artifacts import OnboardingError
from fedhealth.onboarding.validate_site import (
    DECISION_DEPLOY,
    DECISION_DEPLOY_FINETUNED,
    DECISION_NOT_FIT,
    format_report,
    main,
    validate_site,
)
from fedhealth.training.loops import LocalTrainConfig
from fedhealth_tools.imaging.converter import convert_medmnist, medmnist_file

ROOT = Path(__file__).resolve().parents[3]
N_BOOTSTRAP = 200
TRAIN = LocalTrainConfig(lr=1e-3, batch_size=32, local_epochs=2, optimizer="adam")
# (threshold, decision, fine-tuned?): the global AUC lower bound is 0.889, the fine-tuned one 0.912 (seed 0)
DECISION_CASES = [
    (0.80, DECISION_DEPLOY, False),
    (0.90, DECISION_DEPLOY_FINETUNED, True),
    (0.95, DECISION_NOT_FIT, True),
]


def _train(x: np.ndarray, y: np.ndarray, spec: LabelSpec) -> ImageModel:
    model = ImageModel("small_cnn", 1, spec.n_outputs)
    train_images(model, x, y, TRAIN, spec, augment=False, generator=torch.Generator().manual_seed(0))
    return model


def _nest(folder: Path) -> None:
    """Spread a flat folder's DICOM files over study/series folders (labels stay keyed by file name)."""
    for i, path in enumerate(sorted(folder.glob("*.dcm"))):
        target = folder / f"study_{i % 3}" / f"series_{i % 2}"
        target.mkdir(parents=True, exist_ok=True)
        path.rename(target / path.name)


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("cxr_job")
    convert_medmnist(
        medmnist_file("pneumoniamnist"), root / "sites", sites=["fed", "new"], alpha=100.0, seed=0, limit=500
    )
    train = load_split(root / "sites" / "fed" / "cxr" / "train", LabelSpec(), PipelineSettings())
    result = root / "result"
    (result / "workspace" / "app_server").mkdir(parents=True)
    model_file = result / "workspace" / "app_server" / "FL_global_model.pt"
    torch.save({"model": _train(train.x, train.y, LabelSpec()).state_dict()}, model_file)
    shutil.copytree(ROOT / "jobs" / "cxr_fedavg", result / "job")
    hospital = root / "hospital"
    shutil.copytree(root / "sites" / "new" / "cxr" / "train", hospital)
    _nest(hospital)
    # multi-label: the real finding and a coin flip the model cannot learn
    classes = ["Pneumonia", "Coin"]
    coin = np.random.default_rng(1).integers(0, 2, size=len(train.y)).astype(np.float32)
    multi = _train(train.x, np.stack([train.y, coin], axis=1), LabelSpec("multilabel", tuple(classes)))
    torch.save({"model": multi.state_dict()}, root / "multi.pt")
    task_args = json.loads((ROOT / "jobs/cxr_fedavg/app/config/config_fed_client.json").read_text())
    task_args = task_args["executors"][0]["executor"]["args"]["task_args"]
    (root / "multi_task.json").write_text(
        json.dumps({**task_args, "label_task": "multilabel", "classes": classes, "positive_class": ""})
    )
    table = pd.read_csv(hospital / "labels.csv").rename(columns={"label": "Pneumonia"})
    table["Coin"] = np.random.default_rng(2).integers(0, 2, size=len(table))
    table.to_csv(root / "multi_labels.csv", index=False)
    return {"result": result, "hospital": hospital, "root": root, "model": model_file, "task_args": task_args}


def _run(job: dict, **kwargs: object) -> dict:
    settings = {
        "model_path": None,
        "job_path": job["result"],
        "data_dir": job["hospital"],
        "n_bootstrap": N_BOOTSTRAP,
        **kwargs,
    }
    return validate_site(**settings)  # type: ignore[arg-type]


def _copy(job: dict, tmp_path: Path) -> Path:
    folder = tmp_path / "hospital"
    shutil.copytree(job["hospital"], folder)
    return folder


@pytest.mark.parametrize(("threshold", "decision", "tuned"), DECISION_CASES)
def test_the_new_hospital_gets_a_decision(job: dict, threshold: float, decision: str, tuned: bool) -> None:
    result = _run(job, threshold=threshold)
    assert result["decision"] == decision
    assert (result["fine_tuned"] is not None) is tuned
    assert (result["global"]["lo"] >= threshold) is (decision == DECISION_DEPLOY)
    if tuned:
        assert (result["fine_tuned"]["lo"] >= threshold) is (decision == DECISION_DEPLOY_FINETUNED)
        # the job's own settings: adam, batch 64, weight decay 0, augmentation, round lr 0.001
        assert result["fine_tuning"] == {
            "epochs": 5,
            "lr": 0.001,
            "batch_size": 64,
            "optimizer": "adam",
            "weight_decay": 0.0,
            "augment": True,
        }


def test_the_figures_and_the_report(job: dict) -> None:
    result = _run(job, threshold=0.9)
    assert (result["n_total"], result["n_eval"], result["n_finetune"]) == (253, 127, 126)
    assert (result["n_eval_pos"], result["n_eval_neg"]) == (99, 28)
    assert result["global"]["value"] == pytest.approx(0.934, abs=0.005)
    assert result["fine_tuned"]["value"] == pytest.approx(0.952, abs=0.005)
    assert result["quarantine"] == {"n_quarantined": 0, "counts": {}, "files": []}
    assert result["phi"] == {"n_files": 253, "n_identified": 0, "tags": {}}
    report = format_report(result)
    assert "site data: 253 labelled images from the DICOM folder" in report
    assert "253 files scanned, 0 quarantined" in report
    assert "PHI audit: none of the 253 decoded files carries an identifying attribute" in report
    assert "[5 epochs, lr 0.001, batch 64, adam]" in report


def test_a_garbage_file_and_an_unlabelled_file_are_quarantined_and_counted(job: dict, tmp_path: Path) -> None:
    folder = _copy(job, tmp_path)
    (folder / "study_0" / "junk.dcm").write_bytes(b"this is not a DICOM file")
    labels = pd.read_csv(folder / "labels.csv")
    dropped = labels["file"].iloc[0]
    labels.iloc[1:].to_csv(folder / "labels.csv", index=False)
    result = _run(job, data_dir=folder, threshold=0.8)
    assert result["n_total"] == 252
    assert result["quarantine"]["counts"] == {"unreadable": 1, "no_label": 1}
    files = {e["file"]: e["reason"] for e in result["quarantine"]["files"]}
    assert files["study_0/junk.dcm"] == "unreadable"
    assert [reason for name, reason in files.items() if name.endswith(dropped)] == ["no_label"]
    report = format_report(result)
    assert "254 files scanned, 2 quarantined (unreadable: 1, no_label: 1)" in report
    assert "quarantined study_0/junk.dcm: unreadable (not a DICOM file" in report


def test_labels_keyed_by_sop_instance_uid_from_another_folder(job: dict, tmp_path: Path) -> None:
    labels = pd.read_csv(job["hospital"] / "labels.csv").set_index("file")["label"]
    rows = []
    for path in sorted(job["hospital"].rglob("*.dcm")):
        uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        rows.append({"sop_instance_uid": uid, "label": int(labels[path.name])})
    table = tmp_path / "pacs_labels.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    folder = _copy(job, tmp_path)
    (folder / "labels.csv").unlink()
    by_uid = _run(job, data_dir=folder, labels_path=table, threshold=0.8)
    by_file = _run(job, threshold=0.8)
    assert by_uid["n_total"] == 253 and by_uid["global"] == by_file["global"]


def test_identified_data_is_refused_with_the_tag_names(job: dict, tmp_path: Path) -> None:
    folder = _copy(job, tmp_path)
    for path in sorted(folder.rglob("*.dcm"))[:2]:
        ds = pydicom.dcmread(path)
        ds.PatientName, ds.PatientID = "Doe^Jane", "MRN-0042"
        ds.save_as(path)
    with pytest.raises(
        PhiError,
        match=r"2 of 253 DICOM files carry identifying attributes: PatientID \(2\), "
        r"PatientName \(2\)",
    ) as caught:
        _run(job, data_dir=folder, threshold=0.8)
    assert "Doe" not in str(caught.value) and "MRN" not in str(caught.value)
    result = _run(job, data_dir=folder, threshold=0.8, allow_identified=True)
    assert result["phi"]["n_identified"] == 2
    assert (
        "PHI audit: 2 of 253 files carry identifying attributes: PatientID (2), PatientName (2); read "
        "because of --allow-identified" in format_report(result)
    )


def test_multi_label_is_judged_per_finding_and_the_lowest_decides(job: dict) -> None:
    result = _run(
        job,
        job_path=job["root"] / "multi_task.json",
        model_path=job["root"] / "multi.pt",
        labels_path=job["root"] / "multi_labels.csv",
        threshold=0.8,
        finetune_epochs=1,
    )
    per = result["global"]["per_finding"]
    assert per["Pneumonia"]["value"] == pytest.approx(0.947, abs=0.005)
    assert per["Coin"]["value"] == pytest.approx(0.541, abs=0.01)
    assert result["global"]["finding"] == "Coin" and result["global"]["lo"] == per["Coin"]["lo"]
    assert result["decision"] == DECISION_NOT_FIT
    assert result["findings"]["Pneumonia"]["n_eval_pos"] == 98
    report = format_report(result)
    assert "finding 'Coin' (the lowest bound)" in report and "  Pneumonia: " in report


def test_a_model_of_another_task_is_a_clear_error(job: dict) -> None:
    with pytest.raises(
        OnboardingError, match="multi.pt does not fit the job's task: .*small_cnn with 1 channel"
    ):
        _run(job, model_path=job["root"] / "multi.pt", threshold=0.8)


def test_the_command_prints_the_report(job: dict, capsys: pytest.CaptureFixture) -> None:
    code = main(
        ["--job", str(job["result"]), "--data", str(job["hospital"]), "--threshold", "0.8", "--seed", "0"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert f"decision: {DECISION_DEPLOY}" in out and "253 files scanned" in out
    assert (
        main(["--job", str(job["root"] / "sites"), "--data", str(job["hospital"]), "--threshold", "0.8"]) == 2
    )
    assert "names no 'dicom' task" in capsys.readouterr().err
