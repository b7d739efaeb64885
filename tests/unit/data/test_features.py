"""Feature encoding (FLamby's 13 columns, optional chol indicator) and federated scaling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedhealth.constants import S_COUNT, S_MEAN, S_STD, S_SUM, S_SUMSQ
from fedhealth.data.features import (
    CHOL_MISSING,
    EPS,
    Scaler,
    combine_moments,
    encode,
    feature_names,
    local_moments,
)

FLAMBY_ORDER = [
    "age",
    "sex",
    "trestbps",
    "chol",
    "fbs",
    "thalach",
    "exang",
    "oldpeak",
    "cp_2",
    "cp_3",
    "cp_4",
    "restecg_1",
    "restecg_2",
]
# Row sizes of the simulated sites for the moment-combination tests (one very small site).
SITE_SIZES = [(40, 60, 7), (5, 3), (200,)]
# (chol_zero_as_missing, expected width)
WIDTHS = [(False, 13), (True, 14)]


def _raw(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(29, 78, n).astype(float),
            "sex": rng.integers(0, 2, n).astype(float),
            "cp": rng.integers(1, 5, n).astype(float),
            "trestbps": rng.normal(130, 18, n),
            "chol": np.where(rng.random(n) < 0.3, 0.0, rng.normal(240, 50, n)),
            "fbs": rng.integers(0, 2, n).astype(float),
            "restecg": rng.integers(0, 3, n).astype(float),
            "thalach": rng.normal(140, 25, n),
            "exang": rng.integers(0, 2, n).astype(float),
            "oldpeak": rng.exponential(1.0, n),
        }
    )


def test_feature_names_follow_flamby() -> None:
    assert feature_names(False) == FLAMBY_ORDER
    assert feature_names(True) == [*FLAMBY_ORDER, CHOL_MISSING]


@pytest.mark.parametrize(("chol_zero_as_missing", "width"), WIDTHS)
def test_encode_width_and_values(chol_zero_as_missing: bool, width: int) -> None:
    raw = pd.DataFrame(
        {
            "age": [63.0, 41.0],
            "sex": [1.0, 0.0],
            "cp": [1.0, 3.0],
            "trestbps": [145.0, 130.0],
            "chol": [233.0, 0.0],
            "fbs": [1.0, 0.0],
            "restecg": [2.0, 0.0],
            "thalach": [150.0, 172.0],
            "exang": [0.0, 1.0],
            "oldpeak": [2.3, 1.4],
        }
    )
    x = encode(raw, chol_zero_as_missing=chol_zero_as_missing)
    assert x.shape == (2, width) and len(feature_names(chol_zero_as_missing)) == width
    row0 = [63, 1, 145, 233, 1, 150, 0, 2.3, 0, 0, 0, 0, 1]
    row1 = [41, 0, 130, np.nan if chol_zero_as_missing else 0.0, 0, 172, 1, 1.4, 0, 1, 0, 0, 0]
    if chol_zero_as_missing:
        row0, row1 = [*row0, 0.0], [*row1, 1.0]
    np.testing.assert_array_equal(x, np.array([row0, row1], dtype=float))


def test_encode_real_site_chol_indicator(heart_splits: dict) -> None:
    raw = heart_splits["va_long_beach"].train
    x = encode(raw, chol_zero_as_missing=True)
    chol = FLAMBY_ORDER.index("chol")
    zeros = (raw["chol"] == 0).to_numpy()
    assert zeros.sum() == 22
    np.testing.assert_array_equal(np.isnan(x[:, chol]), zeros)
    np.testing.assert_array_equal(x[:, -1], zeros.astype(float))
    assert not np.isnan(np.delete(x, chol, axis=1)).any()


@pytest.mark.parametrize("sizes", SITE_SIZES)
def test_combine_moments_equals_pooled_mean_and_std(sizes: tuple[int, ...]) -> None:
    blocks = [encode(_raw(n, seed), chol_zero_as_missing=True) for seed, n in enumerate(sizes)]
    if sum(sizes) < 10:
        blocks[0][0, 0] = np.nan  # a missing age too
    stats = combine_moments([local_moments(b) for b in blocks])
    pooled = np.concatenate(blocks)
    np.testing.assert_allclose(stats["mean"], np.nanmean(pooled, axis=0), rtol=1e-10)
    np.testing.assert_allclose(stats["std"], np.nanstd(pooled, axis=0, ddof=1), rtol=1e-8, atol=1e-12)
    counts = np.sum([local_moments(b)["count"] for b in blocks], axis=0)
    np.testing.assert_array_equal(counts, (~np.isnan(pooled)).sum(0))


def test_local_moments_skip_missing_values() -> None:
    x = np.array([[1.0, np.nan], [3.0, 4.0], [5.0, np.nan]])
    assert local_moments(x) == {"count": [3.0, 1.0], "sum": [9.0, 4.0], "sumsq": [35.0, 16.0]}


@pytest.mark.parametrize(
    ("moments", "message"),
    [
        ([], "at least one site"),
        ([local_moments(np.array([[1.0, np.nan], [2.0, 3.0]]))], "at least two observed values"),
    ],
)
def test_combine_moments_errors(moments: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        combine_moments(moments)


def test_scaler_standardises_and_maps_nan_to_zero() -> None:
    x = np.array([[1.0, 10.0], [3.0, np.nan], [5.0, 30.0]])
    scaler = Scaler.fit(x)
    np.testing.assert_allclose(scaler.mean, [3.0, 20.0])
    np.testing.assert_allclose(scaler.std, [2.0, np.sqrt(200.0)])
    z = scaler.transform(x)
    assert z.dtype == np.float32
    expected = np.array([[-1.0, -10 / np.sqrt(200)], [0.0, 0.0], [1.0, 10 / np.sqrt(200)]])
    np.testing.assert_allclose(z, expected, rtol=1e-6)


def test_scaler_constant_column_uses_eps() -> None:
    scaler = Scaler.from_stats({"mean": [2.0], "std": [0.0]})
    np.testing.assert_allclose(scaler.transform(np.array([[2.0], [3.0]])), [[0.0], [1.0 / EPS]], rtol=1e-6)


@pytest.mark.parametrize("width", [12, 14])
def test_scaler_rejects_wrong_width(width: int) -> None:
    scaler = Scaler.from_stats({"mean": [0.0] * 13, "std": [1.0] * 13})
    with pytest.raises(ValueError, match=f"Scaler expects 13 features but the data has {width}"):
        scaler.transform(np.zeros((3, width)))


def test_scaler_stats_round_trip() -> None:
    scaler = Scaler.from_stats({"mean": [1.0, 2.0], "std": [3.0, 4.0]})
    stats = scaler.to_stats(["a", "b"])
    assert stats == {"mean": [1.0, 2.0], "std": [3.0, 4.0], "features": ["a", "b"]}
    again = Scaler.from_stats(stats)
    np.testing.assert_array_equal(again.mean, scaler.mean)
    np.testing.assert_array_equal(again.std, scaler.std)


def test_local_moments_withhold_small_cells_and_combine_skips_them() -> None:
    """A 0/1 column with 3 ones (a category count) and a column seen in 4 patients are small cells at 5."""
    x = np.zeros((20, 3))
    x[:, 0] = np.arange(20.0)  # continuous, 20 observed: released
    x[:3, 1] = 1.0  # one-hot with 3 ones: the sum is a small category count
    x[4:, 2] = np.nan  # observed in 4 patients only
    out = local_moments(x, min_cell=5)
    assert out[S_COUNT] == [20.0, None, None]
    assert out[S_SUM][0] == 190.0 and out[S_SUM][1:] == [None, None]
    assert out[S_SUMSQ][1:] == [None, None]
    assert local_moments(x)[S_SUM][1] == 3.0  # without min_cell nothing is withheld
    other = local_moments(np.ones((10, 3)) * np.array([1.0, 1.0, 2.0]), min_cell=5)
    stats = combine_moments([out, other])
    assert stats[S_MEAN][1] == 1.0 and stats[S_MEAN][2] == 2.0  # withheld: from the other site
    assert stats[S_MEAN][0] == (190.0 + 10.0) / 30.0

    alone = combine_moments([out])  # one site: what it withheld stays unscaled, the rest is its own
    assert alone[S_MEAN][1:] == [0.0, 0.0] and alone[S_STD][1:] == [1.0, 1.0]
