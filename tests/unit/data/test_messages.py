"""No patient value leaves a site in a message: every error path of the site loaders, with planted values.

Each row builds a site whose files carry distinctive PLANTED values (cells, labels, findings, file
and folder names a hospital chose, DICOM PatientName/PatientID and other attributes), drives one
error path through the code a site runs (the executors' start-up, the DICOM quarantine, the
``validate-site`` command), checks the message says what it should (so the row really reaches its
error), and then checks that no planted value appears in that message, in any log record of any
logger, in any warning, in anything printed, or in a report the site writes.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import site_args
import torch
from flare_doubles import WorkspaceEngine
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import ReservedKey, ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.apis.signal import Signal
from nvflare.apis.workspace import Workspace

from fedhealth import constants as C
from fedhealth.data.features import feature_names
from fedhealth.data.messages import SiteDataError, safe_reason
from fedhealth.data.site_data import RAW_COLUMNS, TARGET
from fedhealth.executors.site_executor import SiteExecutor
from fedhealth.imaging.cache import DecodedCache
from fedhealth.imaging.labels import LabelSpec, write_labels
from fedhealth.imaging.quarantine import NON_IMAGE_OBJECT, UNREADABLE, UNSUPPORTED_IMAGE, check_file
from fedhealth.imaging.site import PipelineSettings
from fedhealth.models.tabular import TabularNet
from fedhealth.onboarding.validate_site import main as validate_site_main
from fedhealth.training.heart_site import HeartSite
from fedhealth_tools.imaging.converter import ScannerProfile, to_dicom
from fedhealth_tools.imaging.synthetic import write_synthetic_site

JOB_ID = "job-1"
SITE = "north"
N_IMAGES = 12  # per split of the synthetic imaging site
# Values a hospital's data may hold; none may come back in anything the site says.
NAME = "Zq7Doe^Jane"  # a patient's name (DICOM PatientName, a cell)
MRN = "MRN-8841-PLANT"  # a patient identifier (DICOM PatientID, a key)
HOSPITAL_NAME = "Doe_Jane_MRN0042"  # a file or folder name the hospital chose
FINDING = "Effusion"  # the issue's own example: a diagnosis in a multi-label table
NUMBER = "987654"  # a measured value in a cell
LABEL = "4242"  # a label value
ATTRIBUTE = "Zq7PLANT"  # a DICOM attribute value
PLANTED = (NAME, "Doe^Jane", MRN, HOSPITAL_NAME, FINDING, NUMBER, LABEL, ATTRIBUTE)
JOB_CLASSES = ["Pneumonia", "Mass"]  # a multi-label job's findings (Effusion is not one)
DX_STORAGE = b"1.2.840.10008.5.1.4.1.1.1.1"  # the converter's SOP class (Digital X-Ray, for presentation)


# ----------------------------------------------------------------------------------------- heart sites
def _heart_rows(n: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "age": rng.integers(30, 70, n).astype(float),
            "sex": rng.integers(0, 2, n).astype(float),
            "cp": rng.integers(1, 5, n).astype(float),
            "trestbps": rng.integers(100, 160, n).astype(float),
            "chol": rng.integers(150, 300, n).astype(float),
            "fbs": rng.integers(0, 2, n).astype(float),
            "restecg": rng.integers(0, 3, n).astype(float),
            "thalach": rng.integers(100, 190, n).astype(float),
            "exang": rng.integers(0, 2, n).astype(float),
            "oldpeak": np.round(rng.uniform(0, 3, n), 1),
            TARGET: np.arange(n) % 2,
        }
    )[[*RAW_COLUMNS, TARGET]]


def _kit(tmp_path: Path, settings: dict | None = None, settings_text: str | None = None) -> Path:
    """A site kit whose data folder has a name the hospital chose (it carries an identifier)."""
    kit = tmp_path / SITE
    (kit / "startup").mkdir(parents=True)
    (kit / "local").mkdir()
    text = settings_text or json.dumps({C.SITE_DATA_ROOT_KEY: HOSPITAL_NAME, **(settings or {})})
    (kit / "local" / C.SITE_CONFIG_FILE).write_text(text)
    return kit


def _heart_site(tmp_path: Path, train: str | bytes | None, *, settings: dict | None = None) -> Path:
    """A kit with ``train.csv`` as given (None: no file) and a good ``test.csv``."""
    kit = _kit(tmp_path, settings)
    folder = kit / HOSPITAL_NAME / C.HEART_DATASET_DIR
    folder.mkdir(parents=True)
    _heart_rows().to_csv(folder / C.TEST_FILE, index=False)
    if isinstance(train, bytes):
        (folder / C.TRAIN_FILE).write_bytes(train)
    elif train is not None:
        (folder / C.TRAIN_FILE).write_text(train)
    return kit


def _with(column: str, row: int, value: object, **others: object) -> str:
    df = _heart_rows().astype(object)
    df.loc[row, column] = value
    for other, other_value in others.items():
        df.loc[row, other] = other_value
    return df.to_csv(index=False)


def _context(kit: Path) -> FLContext:
    workspace = Workspace(str(kit), site_name=SITE)
    Path(workspace.get_run_dir(JOB_ID)).mkdir(exist_ok=True)
    fl_ctx = FLContext()
    fl_ctx.set_prop(ReservedKey.ENGINE, WorkspaceEngine(workspace), private=True, sticky=True)
    fl_ctx.set_prop(ReservedKey.IDENTITY_NAME, SITE, private=False, sticky=True)
    fl_ctx.set_prop(ReservedKey.RUN_NUM, JOB_ID, private=False, sticky=True)
    return fl_ctx


def _start(executor, kit: Path) -> str:
    """Start a run at the site and ask it to train: the ``fedhealth_error`` header the server gets."""
    fl_ctx = _context(kit)
    executor.handle_event(EventType.START_RUN, fl_ctx)
    reply = executor.execute(C.TASK_TRAIN, Shareable(), fl_ctx, Signal())
    assert reply.get_return_code() == ReturnCode.EXECUTION_EXCEPTION
    return reply.get_header(C.HEADER_ERROR)


def heart(train: str | bytes | None, *, settings: dict | None = None, patch=None):
    def build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], str]:
        kit = _heart_site(tmp_path, train, settings=settings)
        if patch is not None:
            patch(monkeypatch)
        return lambda: _start(SiteExecutor(task="heart", stream_metrics=False, n_bootstrap=20), kit)

    return build


def heart_task(patch):
    """A good site whose ``fed_stats`` task meets a library error (the executor's task-time path)."""

    def build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], str]:
        # Six training rows are a small cell under the default floor: this site lowers its own, so
        # that the task reaches the library error.
        limits = {C.SITE_LIMITS_KEY: {"min_examples_per_round": 1}}
        kit = _heart_site(tmp_path, _heart_rows().to_csv(index=False), settings=limits)

        def run() -> str:
            executor, fl_ctx = SiteExecutor(task="heart", stream_metrics=False, n_bootstrap=20), _context(kit)
            executor.handle_event(EventType.START_RUN, fl_ctx)
            patch(monkeypatch)
            reply = executor.execute(C.TASK_FED_STATS, Shareable(), fl_ctx, Signal())
            assert reply.get_return_code() == ReturnCode.EXECUTION_EXCEPTION
            return reply.get_header(C.HEADER_ERROR)

        return run

    return build


def _moments_library_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def moments(self, *, min_cell=None):
        return pd.DataFrame({"age": [NAME]}).astype({"age": float})  # ValueError raised inside pandas

    monkeypatch.setattr(HeartSite, "moments", moments)


def heart_settings(text: str):
    def build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], str]:
        kit = _kit(tmp_path, settings_text=text)
        return lambda: _start(SiteExecutor(task="heart", stream_metrics=False, n_bootstrap=20), kit)

    return build


def _read_csv_raises(exc: Exception):
    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        def read_csv(path, *args, **kwargs):
            raise exc

        monkeypatch.setattr(pd, "read_csv", read_csv)

    return patch


def _read_csv_library_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """pandas itself failing on a value, as a library does: its message quotes the value."""

    def read_csv(path, *args, **kwargs):
        return pd.DataFrame({"age": [NAME]}).astype({"age": float})  # ValueError raised inside pandas

    monkeypatch.setattr(pd, "read_csv", read_csv)


# ----------------------------------------------------------------------------------------- imaging sites
def _cxr_site(tmp_path: Path, settings: dict | None = None, *, identified: bool = False) -> Path:
    kit = _kit(tmp_path, settings)
    write_synthetic_site(kit / HOSPITAL_NAME, n=N_IMAGES)
    if identified:
        for path in sorted((kit / HOSPITAL_NAME / "cxr" / "train").glob("*.dcm")):
            ds = pydicom.dcmread(path)
            ds.PatientName, ds.PatientID = NAME, MRN
            ds.save_as(path, enforce_file_format=True)
    return kit


def _train_folder(kit: Path) -> Path:
    return kit / HOSPITAL_NAME / "cxr" / "train"


def cxr(edit=None, *, settings: dict | None = None, identified: bool = False, **executor_args):
    def build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], str]:
        kit = _cxr_site(tmp_path, settings, identified=identified)
        if edit is not None:
            edit(kit)
        args = {"stream_metrics": False, "n_bootstrap": 20, "min_images": 10, **executor_args}
        return lambda: _start(SiteExecutor(**site_args.cxr(**args)), kit)

    return build


def _labels_text(text: str):
    def edit(kit: Path) -> None:
        (_train_folder(kit) / "labels.csv").write_text(text)

    return edit


def _findings(kit: Path) -> None:
    names = sorted(p.name for p in _train_folder(kit).glob("*.dcm"))
    cells = [FINDING if i == 1 else "Pneumonia" if i % 2 else "No Finding" for i in range(len(names))]
    pd.DataFrame({"file": names, "findings": cells}).to_csv(_train_folder(kit) / "labels.csv", index=False)


def _duplicate_key(kit: Path) -> None:
    names = [f"{HOSPITAL_NAME}.dcm", f"{HOSPITAL_NAME}.dcm"]
    write_labels(_train_folder(kit) / "labels.csv", names, np.array([0, 1]), LabelSpec("binary"))


def _garbage_with_hospital_names(kit: Path) -> None:
    folder = _train_folder(kit)
    names = []
    for i, path in enumerate(sorted(folder.glob("*.dcm"))):
        path.unlink()
        name = f"{HOSPITAL_NAME}_{NAME}_{i}.dcm"
        (folder / name).write_text(f"{NAME} {MRN} {NUMBER}\n" * 20)
        names.append(name)
    write_labels(folder / "labels.csv", names, np.arange(len(names)) % 2, LabelSpec("binary"))


def _no_val_split(kit: Path) -> None:
    for path in sorted((kit / HOSPITAL_NAME / "cxr" / "val").iterdir()):
        path.unlink()
    (kit / HOSPITAL_NAME / "cxr" / "val").rmdir()


def _cache_under_a_file(kit: Path) -> None:
    (kit / f"{HOSPITAL_NAME}_cache").write_text("a file where the cache folder should be")


def _corrupt_provenance(kit: Path) -> None:
    settings = PipelineSettings(size=28, channels=1, intensity="zscore", min_images=10).cache_settings()
    digest = DecodedCache(kit / "image_cache", settings).digest
    (kit / "image_cache" / digest).mkdir(parents=True)
    (kit / "image_cache" / digest / "provenance.json").write_text(f'{{"items": {{"{NAME}": ')


# ----------------------------------------------------------------------------------------- DICOM quarantine
def _planted_dicom(folder: Path, name: str, swaps: dict[bytes, bytes], **attributes: str) -> Path:
    """A valid file, then placeholder bytes swapped for planted ones of the same length (pydicom
    refuses to write invalid values, a PACS export does not)."""
    image = (np.arange(28 * 28).reshape(28, 28) % 200).astype(np.uint8)
    ds = to_dicom(image, ScannerProfile(), ["planted", name])
    for key, value in attributes.items():
        setattr(ds, key, value)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    ds.save_as(path, enforce_file_format=True)
    data = path.read_bytes()
    for old, new in swaps.items():
        assert len(old) == len(new) and old in data
        data = data.replace(old, new)
    path.write_bytes(data)
    return path


def quarantined(reason: str, swaps: dict[bytes, bytes], **attributes: str):
    def build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], str]:
        folder = tmp_path / "split"
        path = _planted_dicom(folder, f"{HOSPITAL_NAME}.dcm", swaps, **attributes)

        def run() -> str:
            entry = check_file(path, folder).entry
            assert entry is not None and entry.reason == reason, entry
            return entry.detail

        return run

    return build


def _garbage_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], str]:
    folder = tmp_path / "split"
    folder.mkdir()
    path = folder / f"{HOSPITAL_NAME}.dcm"
    path.write_text(f"{NAME} {MRN}\n" * 40)

    def run() -> str:
        entry = check_file(path, folder).entry
        assert entry is not None and entry.reason == UNREADABLE
        return entry.detail

    return run


# ----------------------------------------------------------------------------------------- validate-site
def _model_and_scaling(root: Path) -> tuple[Path, Path]:
    model, scaling = root / "FL_global_model.pt", root / C.SCALING_STATE_FILE
    torch.save({"model": TabularNet(in_features=14, seed=0).state_dict()}, model)
    names = feature_names(True)
    scaling.write_text(json.dumps({"mean": [0.0] * len(names), "std": [1.0] * len(names), "features": names}))
    return model, scaling


def validate(files: dict[str, str] | None, *, data_is_file: bool = False):
    """``fedhealth-site validate-site`` on a data folder (or one CSV) with names the hospital chose."""

    def build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], str]:
        model, scaling = _model_and_scaling(tmp_path)
        data = tmp_path / HOSPITAL_NAME
        (data / C.HEART_DATASET_DIR).mkdir(parents=True)
        for name, text in (files or {}).items():
            (data / C.HEART_DATASET_DIR / name).write_text(text)
        target = data / C.HEART_DATASET_DIR / next(iter(files)) if data_is_file else data
        out = tmp_path / "site_report" / "validate.json"
        argv = ["--model", str(model), "--scaling", str(scaling), "--data", str(target)]
        argv += ["--threshold", "0.7", "--out", str(out)]

        def run() -> str:
            stdout, stderr = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                code = validate_site_main(argv)
            if code == 0:
                return stdout.getvalue() + out.read_text()
            assert code == 2 and not stdout.getvalue()
            return stderr.getvalue()

        return run

    return build


@dataclass(frozen=True)
class Case:
    """One error path: how to reach it, and what its message must say."""

    id: str
    build: Callable[[Path, pytest.MonkeyPatch], Callable[[], str]]
    says: tuple[str, ...]


CASES = [
    # ---- the heart site's own settings and CSV files, through the executor's start-up
    Case(
        "settings: not JSON",
        heart_settings(f'{{"data_root": "{HOSPITAL_NAME}", "x": {NAME}}}'),
        ("not valid JSON",),
    ),
    Case("settings: not an object", heart_settings(json.dumps([NAME, MRN])), ("must hold a JSON object",)),
    Case(
        "settings: metadata not an object",
        heart(_heart_rows().to_csv(index=False), settings={C.SITE_METADATA_KEY: NAME}),
        ("'metadata' must be a JSON object",),
    ),
    Case("csv: missing file", heart(None), ("data file heart_disease/train.csv is missing at this site",)),
    Case(
        "csv: cannot be opened",
        heart(
            "",
            patch=_read_csv_raises(PermissionError(13, "Permission denied", f"/{HOSPITAL_NAME}/train.csv")),
        ),
        ("data file heart_disease/train.csv cannot be opened: PermissionError",),
    ),
    Case("csv: empty", heart(""), ("cannot be read as CSV: EmptyDataError",)),
    Case(
        "csv: parser error", heart(f'age,sex\n"{NAME},1\n{MRN},2\n'), ("cannot be read as CSV: ParserError",)
    ),
    Case("csv: not UTF-8", heart(b"age,sex\n\xff\xfe" + NAME.encode() + b",1\n"), ("UnicodeDecodeError",)),
    Case(
        "csv: missing column",
        heart(_heart_rows().rename(columns={"chol": NAME}).to_csv(index=False)),
        ("has no column 'chol'",),
    ),
    Case(
        "csv: non-numeric cell",
        heart(_with("age", 1, NAME)),
        ("column 'age': non-numeric value in line(s) 3",),
    ),
    Case(
        "csv: empty cell",
        heart(_with("thalach", 2, None, age=NUMBER)),
        ("column 'thalach': empty value in line(s) 4",),
    ),
    Case(
        "csv: label not 0/1",
        heart(_with(TARGET, 0, LABEL)),
        ("column 'target': labels must be 0 or 1 (line(s) 2)",),
    ),
    Case("csv: no rows", heart(_heart_rows().head(0).to_csv(index=False)), ("has no rows",)),
    Case(
        "library error at start-up",
        heart(_heart_rows().to_csv(index=False), patch=_read_csv_library_error),
        ("ValueError while loading this site's data", "the library's message is not shown"),
    ),
    Case(
        "library error in a task",
        heart_task(_moments_library_error),
        ("failed task 'fed_stats': ValueError while loading this site's data",),
    ),
    # ---- the imaging site: labels, PHI audit, quarantine count, folders, cache, through the executor
    Case(
        "labels: missing",
        cxr(lambda kit: (_train_folder(kit) / "labels.csv").unlink()),
        ("label file train/labels.csv is missing",),
    ),
    Case(
        "labels: no key column",
        cxr(_labels_text(f"{NAME},label\n{MRN},1\n")),
        ("needs a 'file' or 'sop_instance_uid' column",),
    ),
    Case("labels: repeated key", cxr(_duplicate_key), ("column 'file' repeats a key in line 3",)),
    Case(
        "labels: label out of range",
        cxr(_labels_text(f"file,label\nimg_000.dcm,{LABEL}\nimg_001.dcm,{NAME}\n")),
        ("column 'label', line 2: expected a whole number in 0..1 (2 line(s) in all)",),
    ),
    Case(
        "labels: unknown finding",
        cxr(_findings, label_task="multilabel", classes=JOB_CLASSES),
        (
            "column 'findings': 1 line(s) name a finding that is not one of the job's 2 classes "
            "(1 distinct unknown value(s); first at line 3)",
        ),
    ),
    Case(
        "labels: finding columns missing",
        cxr(
            _labels_text(f"file,{FINDING},{NAME}\nimg_000.dcm,1,0\n"),
            label_task="multilabel",
            classes=JOB_CLASSES,
        ),
        ("needs a 'findings' column or columns ['Pneumonia', 'Mass']",),
    ),
    Case(
        "phi: identified files",
        cxr(identified=True),
        (
            f"{N_IMAGES} of {N_IMAGES} DICOM files carry identifying attributes: "
            f"PatientID ({N_IMAGES}), PatientName ({N_IMAGES})",
        ),
    ),
    Case(
        "quarantine: too few images",
        cxr(_garbage_with_hospital_names),
        (
            "only 0 usable DICOM images, fewer than the minimum of 10 "
            f"({N_IMAGES} files quarantined - unreadable: {N_IMAGES})",
        ),
    ),
    Case("folders: split missing", cxr(_no_val_split), ("image folder cxr/val is missing at this site",)),
    Case(
        "settings: require_deidentified",
        cxr(settings={C.SITE_REQUIRE_DEIDENTIFIED_KEY: NAME}),
        ("'require_deidentified' must be true or false",),
    ),
    Case(
        "cache: cannot be written",
        cxr(_cache_under_a_file, settings={C.SITE_IMAGE_CACHE_KEY: f"{HOSPITAL_NAME}_cache/sub"}),
        ("the decoded-image cache cannot be written", "'image_cache' setting"),
    ),
    Case(
        "cache: corrupt provenance",
        cxr(_corrupt_provenance),
        ("provenance.json cannot be read (JSONDecodeError)",),
    ),
    # ---- the quarantine's reason for one file (the report stays at the site; its details quote nothing)
    Case(
        "dicom: unregistered SOP class",
        quarantined(NON_IMAGE_OBJECT, {DX_STORAGE: NAME.encode() + b"." * (len(DX_STORAGE) - len(NAME))}),
        ("SOP class (unregistered, UID not shown) is not an image",),
    ),
    Case(
        "dicom: unknown photometric interpretation",
        quarantined(UNSUPPORTED_IMAGE, {b"MONOCHROME2": ATTRIBUTE.encode() + b"XYZ"}),
        ("the pixel data cannot be decoded (ValueError)",),
    ),
    Case(
        "dicom: number of frames not a number",
        quarantined(UNSUPPORTED_IMAGE, {b"12345678": ATTRIBUTE.encode()}, NumberOfFrames="12345678"),
        ("the Number of Frames attribute is not a whole number",),
    ),
    Case(
        "dicom: rescale slope not a number",
        quarantined(UNSUPPORTED_IMAGE, {b"1.234567": ATTRIBUTE.encode()}, RescaleSlope="1.234567"),
        ("while decoding",),
    ),
    Case("dicom: not DICOM", _garbage_file, ("not a DICOM file",)),
    # ---- validate-site at the hospital: its own CSV names are not repeated, in errors or in its report
    Case(
        "validate-site: bad cell in a hospital-named CSV",
        validate({f"{HOSPITAL_NAME}.csv": _with("age", 1, NAME)}),
        ("validate-site: data file CSV file 1 of 1, column 'age': non-numeric value in line(s) 3",),
    ),
    Case(
        "validate-site: one hospital-named CSV given",
        validate({f"{HOSPITAL_NAME}.csv": _with(TARGET, 3, LABEL)}, data_is_file=True),
        ("data file CSV file 1 of 1, column 'target': labels must be 0 or 1 (line(s) 5)",),
    ),
    Case(
        "validate-site: no CSV file",
        validate({}),
        ("no CSV file in the data folder's heart_disease/",),
    ),
    Case(
        "validate-site: report",
        validate(
            {
                f"{HOSPITAL_NAME}_a.csv": _heart_rows(30).to_csv(index=False),
                "train.csv": _heart_rows(30).to_csv(index=False),
            }
        ),
        ("labelled patients from CSV file 1 of 2, heart_disease/train.csv", '"CSV file 1 of 2"'),
    ),
]


def _leaks(text: str) -> list[str]:
    return [value for value in PLANTED if value in text]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_no_planted_value_in_any_message_log_or_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capsys, case: Case
) -> None:
    run = case.build(tmp_path, monkeypatch)
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        message = run()
    for fragment in case.says:
        assert fragment in message, message
    assert not _leaks(message), message
    records = [f"{r.name}: {r.getMessage()} {r.exc_text or ''}" for r in caplog.records]
    assert not [r for r in records if _leaks(r)]
    assert not [str(w.message) for w in caught if _leaks(str(w.message))]
    printed = "".join(capsys.readouterr())
    assert not _leaks(printed), printed
    # what the site writes for others: its run folder (job results) and validate-site's --out report
    written = [
        p for p in tmp_path.rglob("*") if p.is_file() and (JOB_ID in p.parts or "site_report" in p.parts)
    ]
    for path in written:
        assert not _leaks(path.read_text(errors="replace")), path
    if message.startswith(f"site {SITE} failed task"):  # an executor: its log lines were captured
        assert any(message in r for r in records)


# ----------------------------------------------------------------------------------------- safe_reason itself
def _kit_raise() -> None:
    from fedhealth.privacy.dp_config import check_site_budget

    check_site_budget(-1, "local/fedhealth_site.json")


def _conversion_in_kit_code() -> None:
    from pydicom.dataset import Dataset

    from fedhealth.imaging.dicom_reader import voi_output_range

    ds = Dataset()
    ds.PixelRepresentation, ds.BitsStored = 0, 12
    ds.RescaleSlope, ds.RescaleIntercept = NAME, "0"  # float(NAME) fails inside a fedhealth frame
    voi_output_range(ds)


def _os_error() -> None:
    open(f"/nonexistent/{HOSPITAL_NAME}/{NAME}.dcm")  # noqa: SIM115


def _site_data_error() -> None:
    raise SiteDataError("data file heart_disease/train.csv has no rows")


# (how to raise, what safe_reason must say, whether the exception's own text is kept)
REASONS = [
    (_site_data_error, "data file heart_disease/train.csv has no rows", True),
    (_kit_raise, "the privacy budget must be a positive number of epsilon", True),
    (_conversion_in_kit_code, "ValueError while loading this site's data", False),
    (_os_error, "FileNotFoundError (ENOENT) on a file of this site's data, cache or run folder", False),
]


@pytest.mark.parametrize(("raise_it", "says", "kept"), REASONS, ids=[r[0].__name__ for r in REASONS])
def test_safe_reason_keeps_the_kits_words_and_drops_everything_else(raise_it, says: str, kept: bool) -> None:
    with pytest.raises(Exception) as info:
        raise_it()
    reason = safe_reason(info.value)
    assert says in reason and (reason == str(info.value)) == kept
    assert not _leaks(reason)
    if not kept:
        assert _leaks(str(info.value)), "the row must plant a value in the original message"
