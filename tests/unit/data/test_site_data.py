"""A site's own data files: errors that name the file and column, data root, round trip."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedhealth.data.site_data import (
    RAW_COLUMNS,
    TARGET,
    SiteDataError,
    load_site,
    read_split,
    resolve_data_root,
    site_settings,
    write_site,
)

GOOD = pd.DataFrame(
    {
        "age": [63.0, 41.0, 57.0],
        "sex": [1.0, 0.0, 1.0],
        "cp": [1.0, 2.0, 4.0],
        "trestbps": [145.0, 130.0, 140.0],
        "chol": [233.0, 204.0, 0.0],
        "fbs": [1.0, 0.0, 0.0],
        "restecg": [2.0, 0.0, 1.0],
        "thalach": [150.0, 172.0, 120.0],
        "exang": [0.0, 0.0, 1.0],
        "oldpeak": [2.3, 1.4, 0.5],
        TARGET: [0, 0, 1],
    }
)


def _without_chol(df: pd.DataFrame) -> str:
    return df.drop(columns="chol").to_csv(index=False)


def _abc_in_age(df: pd.DataFrame) -> str:
    return df.astype({"age": object}).assign(age=[63.0, "abc", 57.0]).to_csv(index=False)


def _empty_thalach(df: pd.DataFrame) -> str:
    return df.assign(thalach=[150.0, 172.0, None]).to_csv(index=False)


def _label_two(df: pd.DataFrame) -> str:
    return df.assign(**{TARGET: [0, 2, 1]}).to_csv(index=False)


def _header_only(df: pd.DataFrame) -> str:
    return df.head(0).to_csv(index=False)


# (case, file content or None for "no file", message fragments after the file label)
ERROR_CASES: list[tuple[str, Callable[[pd.DataFrame], str] | None, list[str]]] = [
    ("missing file", None, ["is missing at this site"]),
    ("missing column", _without_chol, ["has no column 'chol'"]),
    ("non-numeric", _abc_in_age, ["column 'age'", "non-numeric value in line(s) 3"]),
    ("empty value", _empty_thalach, ["column 'thalach'", "empty value in line(s) 4"]),
    ("label 2", _label_two, ["column 'target'", "labels must be 0 or 1"]),
    ("empty file", lambda df: "", ["cannot be read as CSV", "EmptyDataError"]),
    ("header only", _header_only, ["has no rows"]),
]


@pytest.mark.parametrize(("case", "content", "fragments"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_read_split_errors_name_file_and_column(
    tmp_path: Path, case: str, content: Callable[[pd.DataFrame], str] | None, fragments: list[str]
) -> None:
    path = tmp_path / "heart_disease" / "train.csv"
    path.parent.mkdir()
    if content is not None:
        path.write_text(content(GOOD))
    with pytest.raises(SiteDataError) as info:
        read_split(path)
    message = str(info.value)
    assert message.startswith("data file heart_disease/train.csv")
    for fragment in fragments:
        assert fragment in message
    assert "abc" not in message and "233" not in message  # never a patient value


@pytest.mark.parametrize(("case", "content", "fragments"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_load_site_reports_the_broken_test_file(
    tmp_path: Path, case: str, content: Callable[[pd.DataFrame], str] | None, fragments: list[str]
) -> None:
    folder = write_site(tmp_path, GOOD, GOOD)
    (folder / "test.csv").unlink()
    if content is not None:
        (folder / "test.csv").write_text(content(GOOD))
    with pytest.raises(SiteDataError, match=r"^data file heart_disease/test\.csv"):
        load_site(tmp_path)


def test_site_data_error_is_a_value_error() -> None:
    assert issubclass(SiteDataError, ValueError)


def test_write_and_load_round_trip(tmp_path: Path) -> None:
    test = GOOD.iloc[[2, 0]].reset_index(drop=True)
    folder = write_site(tmp_path / "data", GOOD, test)
    assert folder == tmp_path / "data" / "heart_disease"
    assert sorted(p.name for p in folder.iterdir()) == ["test.csv", "train.csv"]
    train_table, test_table = load_site(tmp_path / "data")
    assert (len(train_table), len(test_table)) == (3, 2)
    assert list(train_table.features.columns) == list(RAW_COLUMNS)
    pd.testing.assert_frame_equal(train_table.features, GOOD[list(RAW_COLUMNS)].astype("float64"))
    np.testing.assert_array_equal(train_table.labels, np.array([0, 0, 1], dtype="float32"))
    np.testing.assert_array_equal(test_table.labels, np.array([1, 0], dtype="float32"))
    assert train_table.labels.dtype == np.float32


def test_load_site_reads_real_hospital_split(tmp_path: Path, heart_splits: dict) -> None:
    split = heart_splits["va_long_beach"]
    write_site(tmp_path, split.train, split.test)
    train, test = load_site(tmp_path)
    assert (len(train), len(test)) == (85, 45)
    np.testing.assert_array_equal(train.labels, split.train[TARGET].to_numpy("float32"))


# (fedhealth_site.json text or None for no file, the settings read)
SETTINGS_CASES = [
    (None, {}),
    ("{}", {}),
    ('{"max_local_steps": 20}', {"max_local_steps": 20}),
    ('{"max_local_steps": 1, "data_root": "d"}', {"max_local_steps": 1, "data_root": "d"}),
    ('{"max_local_steps": null}', {"max_local_steps": None}),
]
# (fedhealth_site.json text, fragment of the error)
BAD_SETTINGS_CASES = [
    (
        '{"max_local_steps": -3}',
        "'max_local_steps' must be a whole number of local optimizer steps, at least 1",
    ),
    ('{"max_local_steps": 0}', "got 0"),
    ('{"max_local_steps": 2.5}', "got 2.5"),
    ('{"max_local_steps": 20.0}', "got 20.0"),
    ('{"max_local_steps": "20"}', "got '20'"),
    ('{"max_local_steps": true}', "got True"),
    ("[1, 2]", "must hold a JSON object of settings, not a list"),
    ("{max_local_steps: 3}", "not valid JSON"),
]
# (fedhealth_site.json content or None for no file, expected data root relative to the site; None = absolute)
ROOT_CASES = [
    (None, "data"),
    ({"data_root": "my_data"}, "my_data"),
    ({"data_root": "nested/dir"}, "nested/dir"),
    ({"data_root": ""}, "data"),
    ({"other": 1}, "data"),
    ({"data_root": "ABSOLUTE"}, None),
]


@pytest.mark.parametrize(("settings", "expected"), ROOT_CASES)
def test_resolve_data_root(tmp_path: Path, settings: dict | None, expected: str | None) -> None:
    site = tmp_path / "site-1"
    (site / "local").mkdir(parents=True)
    absolute = tmp_path / "elsewhere" / "hospital"
    if settings is not None:
        if settings.get("data_root") == "ABSOLUTE":
            settings = {"data_root": str(absolute)}
        (site / "local" / "fedhealth_site.json").write_text(json.dumps(settings))
    want = absolute if expected is None else site / expected
    assert resolve_data_root(site) == want


def test_resolve_data_root_rejects_bad_json(tmp_path: Path) -> None:
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "fedhealth_site.json").write_text("{data_root: ")
    with pytest.raises(SiteDataError, match=r"fedhealth_site\.json: not valid JSON .* line 1"):
        resolve_data_root(tmp_path)


@pytest.mark.parametrize(("text", "expected"), SETTINGS_CASES)
def test_site_settings(tmp_path: Path, text: str | None, expected: dict) -> None:
    (tmp_path / "local").mkdir()
    if text is not None:
        (tmp_path / "local" / "fedhealth_site.json").write_text(text)
    assert site_settings(tmp_path) == expected


@pytest.mark.parametrize(("text", "fragment"), BAD_SETTINGS_CASES)
def test_site_settings_errors_name_file_and_key(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "fedhealth_site.json").write_text(text)
    for read in (site_settings, resolve_data_root):
        with pytest.raises(SiteDataError) as info:
            read(tmp_path)
        assert str(info.value).startswith("local/fedhealth_site.json: ")
        assert fragment in str(info.value)


# (provisioned fedhealth_site.json.default, the hospital's own fedhealth_site.json, merged settings)
MERGE_CASES = [
    ({"data_root": "d"}, None, {"data_root": "d"}),
    (
        {"data_root": "d", "max_local_steps": 5},
        {"data_root": "mine"},
        {"data_root": "mine", "max_local_steps": 5},
    ),
    (
        {"limits": {"min_batch_size": 32, "max_learning_rate": 0.5}},
        {"limits": {"min_batch_size": 16}},
        {"limits": {"min_batch_size": 16, "max_learning_rate": 0.5}},
    ),
    (
        {"scope_limits": {"strict": {"allow_submit_model": False}, "open": {"min_batch_size": 8}}},
        {"scope_limits": {"strict": {"max_learning_rate": 0.1}}},
        {
            "scope_limits": {
                "strict": {"allow_submit_model": False, "max_learning_rate": 0.1},
                "open": {"min_batch_size": 8},
            }
        },
    ),
    ({"dp_max_epsilon": 8.0}, {"dp_max_epsilon": None}, {"dp_max_epsilon": None}),
]
# (which file, its text, the start of the error)
BAD_LAYER_CASES = [
    ("fedhealth_site.json.default", "[]", "local/fedhealth_site.json.default: must hold a JSON object"),
    (
        "fedhealth_site.json.default",
        '{"max_local_steps": 0}',
        "local/fedhealth_site.json.default: 'max_local_steps'",
    ),
    ("fedhealth_site.json", '{"limits": 3}', "local/fedhealth_site.json: 'limits' must be a JSON object"),
    (
        "fedhealth_site.json",
        '{"scope_limits": {"a": []}}',
        "local/fedhealth_site.json: 'scope_limits' must be",
    ),
]


@pytest.mark.parametrize(("default", "own", "expected"), MERGE_CASES)
def test_own_settings_win_over_the_provisioned_default(
    tmp_path: Path, default: dict, own: dict | None, expected: dict
) -> None:
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "fedhealth_site.json.default").write_text(json.dumps(default))
    if own is not None:
        (tmp_path / "local" / "fedhealth_site.json").write_text(json.dumps(own))
    assert site_settings(tmp_path) == expected


def test_data_root_from_the_provisioned_default(tmp_path: Path) -> None:
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "fedhealth_site.json.default").write_text('{"data_root": "provisioned"}')
    assert resolve_data_root(tmp_path) == tmp_path / "provisioned"


@pytest.mark.parametrize(("name", "text", "start"), BAD_LAYER_CASES)
def test_errors_name_the_file_that_has_them(tmp_path: Path, name: str, text: str, start: str) -> None:
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / name).write_text(text)
    with pytest.raises(SiteDataError) as info:
        site_settings(tmp_path)
    assert str(info.value).startswith(start)
