"""Partitioner statistics: small alpha skews the labels, every row goes to exactly one site."""

from __future__ import annotations

import numpy as np
import pytest

from fedhealth_tools.algorithms.partition import (
    ScannerShift,
    dirichlet_label_split,
    format_table,
    image_site_table,
    label_table,
    partition_images,
    quantity_skew_split,
    scanner_shifts,
)

LABELS = np.repeat([0, 1], [600, 400])
# (alpha, bound on the mean over sites of the largest class share): skewed below, near 0.6 above
SKEW = [(0.1, ">", 0.85), (1.0, ">", 0.6), (100.0, "<", 0.68)]


def _max_share(parts: list[np.ndarray]) -> float:
    return float(np.mean([np.bincount(LABELS[p], minlength=2).max() / len(p) for p in parts]))


@pytest.mark.parametrize(("alpha", "op", "bound"), SKEW)
def test_dirichlet_skew_grows_as_alpha_shrinks(alpha, op, bound):
    shares = [
        _max_share(dirichlet_label_split(LABELS, n_sites=5, alpha=alpha, seed=s, min_size=5))
        for s in range(5)
    ]
    value = float(np.mean(shares))
    assert value > bound if op == ">" else value < bound


@pytest.mark.parametrize(("alpha", "n_sites"), [(0.1, 3), (0.5, 8), (10.0, 4)])
def test_dirichlet_split_deals_every_row_once(alpha, n_sites):
    parts = dirichlet_label_split(LABELS, n_sites=n_sites, alpha=alpha, seed=0, min_size=2)
    everything = np.concatenate(parts)
    assert len(parts) == n_sites and min(len(p) for p in parts) >= 2
    assert len(everything) == len(LABELS) and len(np.unique(everything)) == len(LABELS)
    table = label_table(LABELS, parts)
    assert sum(r["n"] for r in table) == len(LABELS)
    assert sum(r["1"] for r in table) == 400 and all(r["0"] + r["1"] == r["n"] for r in table)


@pytest.mark.parametrize(("beta", "n", "n_sites"), [(0.2, 1000, 4), (5.0, 97, 3)])
def test_quantity_skew_sums_to_n(beta, n, n_sites):
    parts = quantity_skew_split(n, n_sites=n_sites, beta=beta, seed=2, min_size=3)
    assert sum(len(p) for p in parts) == n and len(np.unique(np.concatenate(parts))) == n
    assert min(len(p) for p in parts) >= 3


def test_small_beta_gives_unequal_sizes():
    sizes = [len(p) for p in quantity_skew_split(1000, n_sites=4, beta=0.1, seed=0)]
    assert max(sizes) / min(max(min(sizes), 1), 1000) > 3


@pytest.mark.parametrize(
    ("shift", "pixel", "expected"),
    [
        (ScannerShift(intensity=0.1), 0.5, 0.6),
        (ScannerShift(contrast=2.0), 0.7, 0.9),
        (ScannerShift(intensity=0.9), 0.5, 1.0),
    ],
)
def test_scanner_shift_by_hand(shift, pixel, expected):
    assert shift.apply(np.full((2, 2), pixel))[0, 0] == pytest.approx(expected, abs=1e-6)


def test_scanner_noise_and_range():
    images = np.random.default_rng(0).uniform(size=(10, 28, 28))
    shifts = scanner_shifts(4, strength=1.0, seed=0)
    assert len({s.contrast for s in shifts}) == 4
    out = ScannerShift(noise_sd=0.05).apply(images, seed=1)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    assert 0.03 < float(np.std(out - images)) < 0.06
    with pytest.raises(ValueError, match="scaled to \\[0, 1\\]"):
        ScannerShift().apply(images * 255)


def test_table_text_lists_every_site():
    text = format_table(label_table(LABELS, [np.arange(10), np.arange(10, 1000)], names=["a", "b"]))
    assert text.splitlines()[0].split() == ["site", "n", "0", "1"]
    assert text.splitlines()[1].split() == ["a", "10", "10", "0"]


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"alpha": 0.0}, "alpha must be positive"), ({"n_sites": 0}, "at least one site")]
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        dirichlet_label_split(LABELS, **{"n_sites": 3, "alpha": 1.0, **kwargs})


@pytest.mark.parametrize(("alpha", "strength"), [(0.1, 0.0), (1.0, 0.5), (10.0, 1.0)])
def test_image_partition_keeps_every_image_and_shifts_each_site(alpha, strength):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(400, 1, 8, 8), dtype=np.uint8)
    labels = np.repeat([0, 1], 200).reshape(-1, 1)  # MedMNIST's (n, 1) labels
    sites = partition_images(images, labels, n_sites=4, alpha=alpha, shift_strength=strength, seed=3)
    assert sum(len(s.labels) for s in sites) == 400 and all(len(s.labels) >= 10 for s in sites)
    assert all(s.images.shape[1:] == (1, 8, 8) and s.images.dtype == np.float32 for s in sites)
    assert all(s.images.min() >= 0 and s.images.max() <= 1 for s in sites)
    table = image_site_table(sites)
    assert [r["n"] for r in table] == [len(s.labels) for s in sites]
    assert sum(r["1"] for r in table) == 200
    if strength == 0.0:  # no shift: each site holds exactly its original images
        got = np.sort(np.concatenate([s.images.ravel() for s in sites]))
        np.testing.assert_allclose(got, np.sort((images.astype("float32") / 255).ravel()), atol=1e-6)
    else:
        assert len({r["contrast"] for r in table}) == 4
