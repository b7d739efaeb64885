"""What each MedMNIST v2 set is: DICOM modality and SOP class, label task, class names, positive class.

The table is data (``fedhealth_tools/data/medmnist/datasets.json``; its ``source`` says where each
column comes from: the ``medmnist`` package's ``INFO`` label names, the MedMNIST v2 paper's image
sources). A file whose name is not in the table converts as Secondary Capture ``OT`` with generic
class names; ChestMNIST (multi-label) is not in it, the converter reads single-label sets only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pydicom.uid

from fedhealth.imaging.labels import LabelSpec

TABLE_FILE = Path(__file__).resolve().parents[1] / "data" / "medmnist" / "datasets.json"
GENERIC_MODALITY = "OT"  # "other": a file the table does not know
GENERIC_SOP_CLASS = "SecondaryCaptureImageStorage"
_SIZE_SUFFIX = re.compile(r"_(64|128|224)$")  # MedMNIST+ files: pneumoniamnist_224.npz


@dataclass(frozen=True)
class MedmnistSet:
    """One row of the table.

    Args:
        name: the MedMNIST name (``pneumoniamnist``), or the file's stem for an unknown file.
        modality: DICOM Modality (``DX``, ``US``, ``CT``, ``OP``, ...).
        sop_class: pydicom.uid keyword of the SOP class the converter writes.
        label_task: ``binary`` or ``multiclass``.
        classes: class names in stored order (label 0 first).
        positive_class: binary sets: the disease class ("" otherwise).
        known: whether the name is in the table.
    """

    name: str
    modality: str
    sop_class: str
    label_task: str
    classes: tuple[str, ...]
    positive_class: str = ""
    known: bool = True

    @property
    def sop_class_uid(self) -> str:
        return str(getattr(pydicom.uid, self.sop_class))

    @property
    def spec(self) -> LabelSpec:
        return LabelSpec(self.label_task, self.classes, self.positive_class)


@cache
def medmnist_table() -> dict[str, MedmnistSet]:
    """The table, by MedMNIST name."""
    rows = json.loads(TABLE_FILE.read_text())["sets"]
    return {
        name: MedmnistSet(
            name=name,
            modality=row["modality"],
            sop_class=row["sop_class"],
            label_task=row["label_task"],
            classes=tuple(row["classes"]),
            positive_class=row.get("positive_class", ""),
        )
        for name, row in rows.items()
    }


def set_name(npz: Path) -> str:
    """The MedMNIST name of a file: its stem without a MedMNIST+ size suffix, lower case."""
    return _SIZE_SUFFIX.sub("", Path(npz).stem.lower())


def medmnist_set(name: str, n_classes: int) -> MedmnistSet:
    """The table's row for ``name``, or a generic one (``OT``, ``class_<i>``) for an unknown name.

    Raises:
        ValueError: the labels hold more classes than the table names for the set.
    """
    row = medmnist_table().get(name)
    if row is None:
        classes = () if n_classes <= 2 else tuple(f"class_{i}" for i in range(n_classes))
        task = "binary" if n_classes <= 2 else "multiclass"
        return MedmnistSet(name, GENERIC_MODALITY, GENERIC_SOP_CLASS, task, classes, known=False)
    if n_classes > len(row.classes):
        raise ValueError(
            f"{name}: the labels hold {n_classes} classes, the table of MedMNIST sets names "
            f"{len(row.classes)}; is the file really this set?"
        )
    return row
