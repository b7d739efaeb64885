"""The model's input matrix under the aligned schema: column order, imputation, indicators, scaling."""

from __future__ import annotations

import numpy as np
import pytest
from ehr_cases import dictionary, three_sites

from fedhealth.ehr.alignment import AlignmentPolicy, align
from fedhealth.ehr.encoding import encode
from fedhealth.ehr.harmonize import Harmonized
from fedhealth.ehr.profile import site_profile

COLUMNS = ["age", "sex", "cp=atypical_angina", "cp=asymptomatic", "chol", "chol_missing"]


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Harmonized]:
    return three_sites(tmp_path_factory.mktemp("sites"))


@pytest.fixture(scope="module")
def schema(sites: dict[str, Harmonized]) -> dict:
    profiles = {name: site_profile(h.features, dictionary(), min_cell=5) for name, h in sites.items()}
    return align(profiles, dictionary(), AlignmentPolicy())


def test_columns_come_in_the_schemas_order_and_shape(sites: dict, schema: dict) -> None:
    assert schema["columns"] == COLUMNS
    for h in sites.values():
        x = encode(h.features, schema)
        assert x.shape == (40, 6) and x.dtype == np.float32


def test_a_site_without_the_feature_gets_the_imputed_value_zero_after_scaling(
    sites: dict, schema: dict
) -> None:
    x = encode(sites["site-c"].features, schema)
    chol, indicator = COLUMNS.index("chol"), COLUMNS.index("chol_missing")
    assert np.abs(x[:, chol]).max() < 1e-6  # mean imputation, then (mean - mean) / std
    p = 1 / 3
    assert np.allclose(x[:, indicator], (1 - p) / np.sqrt(p * (1 - p)), atol=1e-5)
    measured = encode(sites["site-a"].features, schema)
    assert np.allclose(measured[:, indicator], -p / np.sqrt(p * (1 - p)), atol=1e-5)


def test_pooled_columns_are_standardised(sites: dict, schema: dict) -> None:
    """Numeric and binary columns: sample SD; an indicator: p(1 - p)."""
    x = np.concatenate([encode(h.features, schema) for h in sites.values()]).astype("float64")
    for name, ddof in [("age", 1), ("sex", 1), ("chol_missing", 0)]:
        column = x[:, COLUMNS.index(name)]
        assert column.mean() == pytest.approx(0.0, abs=1e-5), name
        assert column.std(ddof=ddof) == pytest.approx(1.0, abs=1e-5), name
    assert x[:, COLUMNS.index("chol")].mean() == pytest.approx(0.0, abs=1e-5)  # imputed at site-c


def test_a_category_column_is_its_indicator_scaled_by_the_released_share(sites: dict, schema: dict) -> None:
    features = sites["site-b"].features
    j = COLUMNS.index("cp=atypical_angina")
    p = schema["mean"][j]
    assert schema["std"][j] == pytest.approx(np.sqrt(p * (1 - p)))
    expected = ((features["cp"] == "atypical_angina").to_numpy() - p) / np.sqrt(p * (1 - p))
    assert np.allclose(encode(features, schema)[:, j], expected, atol=1e-5)


def test_a_category_the_schema_dropped_encodes_as_missing_not_as_the_reference(
    sites: dict, schema: dict
) -> None:
    features = sites["site-a"].features
    rare = (features["cp"] == "non_anginal").to_numpy()
    reference = (features["cp"] == "typical_angina").to_numpy()
    x = encode(features, schema)
    cols = [COLUMNS.index("cp=atypical_angina"), COLUMNS.index("cp=asymptomatic")]
    assert rare.sum() == 3
    assert np.allclose(x[rare][:, cols], 0.0, atol=1e-6)  # the federation's shares, as for a blank
    assert not np.allclose(x[reference][0, cols], 0.0, atol=1e-3)


def test_a_missing_category_gets_the_federation_shares(sites: dict, schema: dict) -> None:
    features = sites["site-b"].features.copy()
    features.loc[0, "cp"] = np.nan
    x = encode(features, schema)
    assert np.allclose(x[0, [2, 3]], 0.0, atol=1e-6)


def test_a_table_without_a_kept_feature_is_refused(sites: dict, schema: dict) -> None:
    with pytest.raises(ValueError) as err:
        encode(sites["site-a"].features.drop(columns="cp"), schema)
    assert str(err.value) == "the table has no feature 'cp', which the aligned schema keeps"
    broken = {
        **schema,
        "columns": schema["columns"][:-1],
        "mean": schema["mean"][:-1],
        "std": schema["std"][:-1],
    }
    with pytest.raises(ValueError) as err:
        encode(sites["site-a"].features, broken)
    assert str(err.value) == "encoded 6 columns but the schema has 5"
