"""Label tables: binary, multi-class and ChestX-ray14 multi-label, keyed by file name or SOPInstanceUID."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from fedhealth.imaging.labels import (
    CHESTXRAY14_FINDINGS,
    CLASSES_FILE,
    UID_KEY,
    LabelError,
    LabelSpec,
    read_labels,
    write_classes,
    write_labels,
)

SPECS = [
    (LabelSpec("binary"), np.array([0, 1, 1, 0])),
    (LabelSpec("multiclass", ("g0", "g1", "g2", "g3", "g4")), np.array([4, 0, 2, 3])),
    (
        LabelSpec("multilabel", CHESTXRAY14_FINDINGS),
        np.array([[0] * 14, [1] + [0] * 12 + [1], [0, 0, 1, 0, 1] + [0] * 9, [0] * 13 + [1]]),
    ),
]
# (CSV text, spec, message fragment)
BAD = [
    ("name,label\na.dcm,1\n", LabelSpec("binary"), "needs a 'file' or 'sop_instance_uid' column"),
    (
        "file,label\na.dcm,1\nb.dcm,2\n",
        LabelSpec("binary"),
        "column 'label', line 3: expected a whole number in 0..1",
    ),
    ("file,label\na.dcm,yes\n", LabelSpec("binary"), "column 'label', line 2"),
    ("file,label\na.dcm,1\na.dcm,0\n", LabelSpec("binary"), "repeats a key in line 3"),
    (
        "file,findings\na.dcm,Effusion\nb.dcm,Effusion|Tumour\nc.dcm,Tumour|Polyp\n",
        LabelSpec("multilabel", CHESTXRAY14_FINDINGS),
        "2 line(s) name a finding that is not one of the job's 14 classes (2 distinct unknown value(s); "
        "first at line 3)",
    ),
    (
        "file,label\na.dcm,5\n",
        LabelSpec("multiclass", ("a", "b", "c", "d", "e")),
        "expected a whole number in 0..4",
    ),
]


@pytest.mark.parametrize(("spec", "labels"), SPECS, ids=[s.task for s, _ in SPECS])
def test_round_trip(tmp_path: Path, spec: LabelSpec, labels: np.ndarray) -> None:
    keys = [f"img_{i}.dcm" for i in range(len(labels))]
    write_labels(tmp_path / "labels.csv", keys, labels, spec)
    key, table = read_labels(tmp_path / "labels.csv", spec)
    assert key == "file" and list(table) == keys
    np.testing.assert_array_equal(np.stack([table[k] for k in keys]), labels)
    assert spec.n_outputs == (1 if spec.task == "binary" else len(spec.classes))


def test_chestxray14_finding_labels_and_one_column_per_finding_agree(tmp_path: Path) -> None:
    spec = LabelSpec("multilabel", CHESTXRAY14_FINDINGS)
    (tmp_path / "a.csv").write_text(f"{UID_KEY},findings\n1.2.3,Cardiomegaly|Effusion\n1.2.4,No Finding\n")
    columns = ",".join(CHESTXRAY14_FINDINGS)
    rows = [
        "1.2.3," + ",".join("1" if f in ("Cardiomegaly", "Effusion") else "0" for f in CHESTXRAY14_FINDINGS)
    ]
    rows.append("1.2.4," + ",".join("0" for _ in CHESTXRAY14_FINDINGS))
    (tmp_path / "b.csv").write_text(f"{UID_KEY},{columns}\n" + "\n".join(rows) + "\n")
    key_a, a = read_labels(tmp_path / "a.csv", spec)
    key_b, b = read_labels(tmp_path / "b.csv", spec)
    assert key_a == key_b == UID_KEY
    for uid in ("1.2.3", "1.2.4"):
        np.testing.assert_array_equal(a[uid], b[uid])
    assert a["1.2.3"].tolist() == [0, 1, 1] + [0] * 11 and a["1.2.4"].sum() == 0


@pytest.mark.parametrize(("text", "spec", "fragment"), BAD)
def test_bad_tables_name_file_line_and_column(
    tmp_path: Path, text: str, spec: LabelSpec, fragment: str
) -> None:
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(LabelError) as info:
        read_labels(tmp_path / "labels.csv", spec)
    assert fragment in str(info.value) and "labels.csv" in str(info.value)
    assert not {"Tumour", "Polyp", "a.dcm", "yes"} & set(str(info.value).replace("'", " ").split())


def test_spec_checks() -> None:
    with pytest.raises(ValueError, match="label task must be one of"):
        LabelSpec("regression")
    with pytest.raises(ValueError, match="needs at least two class names"):
        LabelSpec("multiclass", ("only",))


NAMES = ("normal", "pneumonia")
BREAST = ("malignant", "normal, benign")  # BreastMNIST: the disease is stored as 0
# (label cells as written, spec, the labels read: 1 = the positive class)
POSITIVE = [
    (["0", "1", "1"], LabelSpec("binary"), [0, 1, 1]),
    (["0", "1", "1"], LabelSpec("binary", positive_class="0"), [1, 0, 0]),
    (["0", "1", "1"], LabelSpec("binary", NAMES), [0, 1, 1]),
    (["0", "1", "1"], LabelSpec("binary", BREAST, "malignant"), [1, 0, 0]),
    (["normal", " pneumonia ", "1"], LabelSpec("binary", NAMES, "pneumonia"), [0, 1, 1]),
    (['"normal, benign"', "malignant", "0"], LabelSpec("binary", BREAST, "malignant"), [0, 1, 1]),
]
# (spec arguments, message fragment)
BAD_SPECS = [
    (("binary", ("a", "b", "c")), "a binary task names no classes or two"),
    (("binary", NAMES, "Pneumonia"), "positive_class 'Pneumonia' is not one of the binary classes"),
    (("binary", (), "yes"), "is not one of the binary classes ['0', '1']"),
    (("binary", ("a", "a")), "class names must differ"),
    (("multiclass", ("a", "b", "c"), "a"), "positive_class applies to binary tasks only"),
]


@pytest.mark.parametrize(("cells", "spec", "expected"), POSITIVE)
def test_the_positive_class_reads_as_1_from_numbers_or_names(
    tmp_path: Path, cells: list[str], spec: LabelSpec, expected: list[int]
) -> None:
    rows = "".join(f"img_{i}.dcm,{cell}\n" for i, cell in enumerate(cells))
    (tmp_path / "labels.csv").write_text("file,label\n" + rows)
    _, table = read_labels(tmp_path / "labels.csv", spec)
    assert [float(table[f"img_{i}.dcm"]) for i in range(len(cells))] == expected
    write_labels(tmp_path / "again.csv", list(table), np.array(list(table.values())), spec)
    _, again = read_labels(tmp_path / "again.csv", spec)  # written back as stored values
    assert [float(v) for v in again.values()] == expected


def test_a_class_name_the_job_does_not_know_is_refused_without_quoting_it(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text(
        "file,label\na.dcm,normal\nb.dcm,Pneumonie\nc.dcm,pneumonia\nd.dcm,x\n"
    )
    with pytest.raises(LabelError) as info:
        read_labels(tmp_path / "labels.csv", LabelSpec("binary", NAMES))
    assert str(info.value) == (
        "label file labels.csv, column 'label', line 3: expected a whole number in 0..1 or one of the job's "
        "class names ['normal', 'pneumonia'] (2 line(s) in all)"
    )
    with pytest.raises(LabelError, match="line 2: expected a whole number in 0..1 \\(4 line"):
        read_labels(tmp_path / "labels.csv", LabelSpec("binary"))  # text needs the job's class names


@pytest.mark.parametrize(("args", "fragment"), BAD_SPECS)
def test_bad_class_names_or_positive_class_are_refused(args: tuple, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        LabelSpec(*args)


def test_classes_file_agrees_or_the_table_is_refused(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("file,label\na.dcm,0\nb.dcm,1\n")
    write_classes(tmp_path, LabelSpec("binary", NAMES))
    assert json.loads((tmp_path / CLASSES_FILE).read_text())["positive_class"] == "pneumonia"
    for spec in (LabelSpec("binary"), LabelSpec("binary", NAMES, "pneumonia")):
        assert read_labels(tmp_path / "labels.csv", spec)[1]["b.dcm"] == 1.0
    for spec in (LabelSpec("binary", positive_class="0"), LabelSpec("binary", ("no", "yes"))):
        with pytest.raises(LabelError, match="says 0 = 'normal', 1 = 'pneumonia', positive 'pneumonia'"):
            read_labels(tmp_path / "labels.csv", spec)
    (tmp_path / CLASSES_FILE).write_text("{not json")
    with pytest.raises(LabelError, match="classes.json beside label file labels.csv cannot be read"):
        read_labels(tmp_path / "labels.csv", LabelSpec("binary"))
