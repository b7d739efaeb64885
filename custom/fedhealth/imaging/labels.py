"""Per-site labels from a CSV: binary, multi-class or multi-label (the 14 ChestX-ray14 findings).

A row is keyed by the image's file name (column ``file``, relative to the split folder, or just its
name) or by its ``sop_instance_uid``. Labels come either as one ``label`` column (0/1 for binary, a
class index for multi-class) or, for multi-label, as one 0/1 column per finding or a ``findings``
column in ChestX-ray14's ``Finding Labels`` form (``"Effusion|Mass"``, ``"No Finding"``; Wang et
al. 2017, "ChestX-ray8"). Errors name the file, the line and the column, and count what is wrong;
they never quote a label, a key or a file name the hospital chose (:mod:`fedhealth.data.messages`):
a finding name next to a line number is a patient's diagnosis.

Which binary class is positive: the job names its two classes in stored order (the class written as
0, then the class written as 1) and the positive one (default the second). Labels are read as
1 = positive, so a set whose disease is stored as 0 (BreastMNIST: 0 = malignant) is flipped on
reading and the model's output is always P(positive). A ``classes.json`` beside ``labels.csv`` (the
converter writes one) records what the table's 0 and 1 mean; a job that reads them otherwise is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fedhealth.data.messages import SiteDataError, file_label

LABEL_TASKS = ("binary", "multiclass", "multilabel")
CHESTXRAY14_FINDINGS = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
NO_FINDING = "No Finding"
FILE_KEY = "file"
UID_KEY = "sop_instance_uid"
LABEL_COLUMN = "label"
FINDINGS_COLUMN = "findings"
LABELS_FILE = "labels.csv"
CLASSES_FILE = "classes.json"  # beside labels.csv: {"label_task", "classes", "positive_class"}
BINARY_STORED = ("0", "1")
SPLIT_FOLDERS = ("train", "val", "test")


class LabelError(SiteDataError):
    """A label table cannot be used; the message names the file, line and column."""


@dataclass(frozen=True)
class LabelSpec:
    """What the labels mean.

    Args:
        task: ``binary``, ``multiclass`` or ``multilabel``.
        classes: class names (multi-class) or finding names (multi-label); binary: none, or the two
            names in stored order (the class written as 0, then the class written as 1).
        positive_class: binary only: the positive class's name (``"0"`` or ``"1"`` without names);
            empty: the second class.
    """

    task: str = "binary"
    classes: tuple[str, ...] = ()
    positive_class: str = ""

    def __post_init__(self) -> None:
        if self.task not in LABEL_TASKS:
            raise ValueError(f"label task must be one of {LABEL_TASKS}, not {self.task!r}.")
        if self.task != "binary" and len(self.classes) < 2:
            raise ValueError(f"a {self.task} task needs at least two class names, got {list(self.classes)}.")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"class names must differ, got {list(self.classes)}.")
        if self.task != "binary":
            if self.positive_class:
                raise ValueError(f"positive_class applies to binary tasks only, not to a {self.task} task.")
            return
        if len(self.classes) not in (0, 2):
            raise ValueError(
                "a binary task names no classes or two (the class stored as 0, then the class stored as 1), "
                f"got {list(self.classes)}."
            )
        if self.positive_class and self.positive_class not in self.binary_names:
            raise ValueError(
                f"positive_class {self.positive_class!r} is not one of the binary classes "
                f"{list(self.binary_names)}."
            )

    @property
    def binary_names(self) -> tuple[str, ...]:
        """A binary task's class names in stored order: the job's, or ``("0", "1")``."""
        return self.classes or BINARY_STORED

    @property
    def positive(self) -> str:
        """A binary task's positive class name (default the second class)."""
        return self.positive_class or self.binary_names[1]

    @property
    def positive_index(self) -> int:
        """The stored value (0 or 1) of a binary task's positive class."""
        return self.binary_names.index(self.positive)

    @property
    def n_outputs(self) -> int:
        """Logits the model needs: 1 for binary, one per class or finding otherwise."""
        return 1 if self.task == "binary" else len(self.classes)


def read_labels(path: Path, spec: LabelSpec) -> tuple[str, dict[str, np.ndarray]]:
    """Read a label CSV; returns the key column (``file`` or ``sop_instance_uid``) and key -> label.

    Binary labels are ``float32`` scalars, multi-class ``int64`` scalars, multi-label ``float32``
    vectors of 0/1 in the order of ``spec.classes``.

    Raises:
        LabelError: missing file or key column, duplicate keys, or a label out of range.
    """
    path = Path(path)
    name = file_label(path, kit_names=(LABELS_FILE,), kit_folders=SPLIT_FOLDERS, fallback="(name not shown)")
    where = f"label file {name}"
    if not path.is_file():
        raise LabelError(f"{where} is missing at this site")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise LabelError(f"{where} cannot be read as CSV: {type(exc).__name__}") from exc
    except OSError as exc:  # its message carries the full path
        raise LabelError(f"{where} cannot be opened: {type(exc).__name__}") from exc
    key = FILE_KEY if FILE_KEY in df.columns else UID_KEY if UID_KEY in df.columns else None
    if key is None:
        raise LabelError(f"{where} needs a {FILE_KEY!r} or {UID_KEY!r} column")
    keys = df[key].str.strip()
    dup = keys[keys.duplicated()]
    if len(dup):
        raise LabelError(f"{where}: column {key!r} repeats a key in line {int(dup.index[0]) + 2}")
    if spec.task == "binary":
        _check_classes_file(path.parent / CLASSES_FILE, spec, where)
    values = _parse(df, spec, where)
    return key, dict(zip(keys, values, strict=True))


def _check_classes_file(path: Path, spec: LabelSpec, where: str) -> None:
    """Refuse a binary job that reads the table's 0 and 1 otherwise than its ``classes.json`` says."""
    if not path.is_file():
        return
    try:
        meta = json.loads(path.read_text())
        names, positive = [str(c) for c in meta.get("classes") or BINARY_STORED], str(meta["positive_class"])
        stored = names.index(positive)
        if len(names) != 2:
            raise ValueError("a binary table has two classes")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LabelError(f"{CLASSES_FILE} beside {where} cannot be read: {type(exc).__name__}") from exc
    if (spec.classes and tuple(names) != spec.classes) or stored != spec.positive_index:
        raise LabelError(
            f"{CLASSES_FILE} beside {where} says 0 = {names[0]!r}, 1 = {names[1]!r}, positive {positive!r}; "
            f"the job reads 0 = {spec.binary_names[0]!r}, 1 = {spec.binary_names[1]!r}, positive "
            f"{spec.positive!r}: set the job's classes and positive_class to match"
        )


def write_classes(folder: Path, spec: LabelSpec) -> None:
    """Write ``classes.json`` beside a split's ``labels.csv``: what its stored labels mean."""
    meta: dict = {"label_task": spec.task, "classes": list(spec.classes)}
    if spec.task == "binary":
        meta.update(classes=list(spec.binary_names), positive_class=spec.positive)
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / CLASSES_FILE).write_text(json.dumps(meta, indent=1) + "\n")


def _parse(df: pd.DataFrame, spec: LabelSpec, where: str) -> list[np.ndarray]:
    if spec.task == "multilabel":
        if FINDINGS_COLUMN in df.columns:
            return _findings(df[FINDINGS_COLUMN], spec.classes, where)
        missing = [c for c in spec.classes if c not in df.columns]
        if missing:
            raise LabelError(f"{where} needs a {FINDINGS_COLUMN!r} column or columns {missing}")
        table = np.stack([_ints(df[c], where, c, 2) for c in spec.classes], axis=1).astype(np.float32)
        return list(table)
    if LABEL_COLUMN not in df.columns:
        raise LabelError(f"{where} has no {LABEL_COLUMN!r} column")
    if spec.task == "binary":
        stored = _ints(_names_to_stored(df[LABEL_COLUMN], spec), where, LABEL_COLUMN, 2, spec.classes)
        return list((stored == spec.positive_index).astype(np.float32))  # 1 = the positive class
    return list(_ints(df[LABEL_COLUMN], where, LABEL_COLUMN, len(spec.classes)))


def _names_to_stored(column: pd.Series, spec: LabelSpec) -> pd.Series:
    """A binary column's class names (text) as their stored value; 0/1 and anything else unchanged."""
    text = column.str.strip()
    return text.replace({name: str(i) for i, name in enumerate(spec.classes)}) if spec.classes else text


def _ints(column: pd.Series, where: str, name: str, n: int, names: tuple[str, ...] = ()) -> np.ndarray:
    numbers = pd.to_numeric(column, errors="coerce")
    bad = numbers.isna() | (numbers % 1 != 0) | (numbers < 0) | (numbers >= n)
    if bad.any():
        rows = np.flatnonzero(bad.to_numpy())
        either = f" or one of the job's class names {list(names)}" if names else ""
        raise LabelError(
            f"{where}, column {name!r}, line {int(rows[0]) + 2}: expected a whole number in 0..{n - 1}"
            f"{either} ({len(rows)} line(s) in all)"
        )
    return numbers.to_numpy().astype(np.int64)


def _findings(column: pd.Series, classes: tuple[str, ...], where: str) -> list[np.ndarray]:
    """0/1 vectors from ``"Effusion|Mass"`` texts; unknown names are counted, never quoted."""
    out, unknown, bad_lines = [], set(), []
    for row, text in enumerate(column):
        vector = np.zeros(len(classes), dtype=np.float32)
        names = [t.strip() for t in str(text).split("|") if t.strip()]
        for name in names:
            if name == NO_FINDING:
                continue
            if name not in classes:
                unknown.add(name)
                bad_lines.append(row + 2)
                continue
            vector[classes.index(name)] = 1.0
        out.append(vector)
    if unknown:
        lines = sorted(set(bad_lines))
        raise LabelError(
            f"{where}, column {FINDINGS_COLUMN!r}: {len(lines)} line(s) name a finding that is not "
            f"one of the job's {len(classes)} classes ({len(unknown)} distinct unknown value(s); first "
            f"at line {lines[0]}); the job's classes are {list(classes)} and {NO_FINDING!r}, separated by '|'"
        )
    return out


def write_labels(
    path: Path, keys: list[str], labels: np.ndarray, spec: LabelSpec, key: str = FILE_KEY
) -> None:
    """Write a label CSV that :func:`read_labels` reads back (one ``label`` column, or ``findings``).

    Binary ``labels`` are as :func:`read_labels` returns them (1 = the positive class) and are written
    as their stored value (flipped when the positive class is stored as 0).
    """
    labels = np.asarray(labels)
    if spec.task == "binary" and spec.positive_index == 0:
        labels = 1 - labels.astype(int)
    if spec.task == "multilabel":
        column = [
            "|".join(c for c, v in zip(spec.classes, row, strict=True) if v) or NO_FINDING for row in labels
        ]
        df = pd.DataFrame({key: keys, FINDINGS_COLUMN: column})
    else:
        df = pd.DataFrame({key: keys, LABEL_COLUMN: labels.astype(int).ravel()})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
