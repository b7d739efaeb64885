"""Image sites in the non-IID twin: the Dirichlet split per site, every algorithm core on tiny images,
and FedOpt with server SGD at lr 1 equal to the image FedAvg twin."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from fedhealth.imaging.labels import LabelSpec
from fedhealth.models.image_model import ImageModel
from fedhealth.models.state import to_numpy
from fedhealth.tasks.imaging import ImageSite
from fedhealth.training.loops import LocalTrainConfig
from fedhealth_tools.imaging.federation import run_image_federation
from fedhealth_tools.imaging.noniid_site import SPLITS, split_image_sites
from fedhealth_tools.training.noniid_federation import ALGORITHMS, run_noniid

LOCAL = {"batch_size": 16, "optimizer": "sgd", "local_epochs": 1}
OPTIONS = {
    "scaffold": {"lr_scale": 10.0},
    "fedopt": {"server_opt": "yogi", "server_lr": 0.01},
    "ditto": {"lam": 0.1, "ditto_lr": 0.1},
    "clustered": {"split_round": 0, "split_threshold": 1.0},  # always splits once
}


def _images(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tiny 28x28 set: class 1 has a bright centre square, class 0 does not."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(int)
    x = rng.integers(0, 80, size=(n, 28, 28)).astype(np.uint8)
    x[y == 1, 10:18, 10:18] = 220
    return x, y[:, None]


def _sites(alpha: float = 1.0) -> list[ImageSite]:
    x, y = _images()
    return split_image_sites(x, y, n_sites=3, alpha=alpha, seed=0, min_size=30)


def _model() -> torch.nn.Module:
    return ImageModel("small_cnn", 1, 1, seed=0)


@pytest.mark.parametrize("alpha", [0.1, 1.0])
def test_split_keeps_every_image_once_and_stratifies(alpha: float) -> None:
    sites = _sites(alpha)
    assert sum(len(s.arrays(k)[1]) for s in sites for k in SPLITS) == 240
    for site in sites:
        x, _ = site.arrays("train")
        assert x.shape[1:] == (1, 28, 28)
        assert x.dtype == np.float32 and 0.0 <= x.min() <= x.max() <= 1
        assert site.binary and not site.augment
        for k in SPLITS:
            assert len(site.arrays(k)[0]) == len(site.arrays(k)[1])
        share = {k: site.arrays(k)[1].mean() for k in SPLITS if len(site.arrays(k)[1])}
        assert max(share.values()) - min(share.values()) < 0.25  # each split has the site's label mix


def test_site_rejects_missing_split() -> None:
    x = np.zeros((4, 1, 28, 28), "float32")
    with pytest.raises(ValueError, match=r"'site-1' lacks the split\(s\) \['val', 'test'\]"):
        ImageSite.from_arrays("site-1", {"train": (x, np.zeros(4))}, LabelSpec("binary"))
    with pytest.raises(ValueError, match="'site-1' has no training images"):
        empty = (x[:0], np.zeros(0))
        ImageSite.from_arrays("site-1", {"train": empty, "val": empty, "test": empty}, LabelSpec("binary"))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_core_runs_image_sites(algorithm: str) -> None:
    sites = _sites()
    seen: list[int] = []
    start = to_numpy(_model())
    result = run_noniid(
        sites,
        _model,
        algorithm=algorithm,
        rounds=2,
        lr=0.01,
        options=OPTIONS[algorithm],
        on_round=lambda r, models: seen.append(len(models)),
        **LOCAL,
    )
    assert seen == [3, 3]
    assert set(result.site_models) == {s.name for s in sites}
    for site in sites:
        model = result.site_models[site.name]
        moved = max(float(np.abs(to_numpy(model)[k] - start[k]).max()) for k in start)
        assert moved > 1e-4
        metrics = site.evaluate(model, "val")
        assert np.isfinite(metrics["loss"]) and 0.0 <= metrics["accuracy"] <= 1.0
    if algorithm == "clustered":
        assert len(result.clusters[-1]) == 2


def test_fedopt_sgd_lr1_equals_image_fedavg_twin() -> None:
    sites = _sites()
    snapshots: list[dict] = []
    run_noniid(
        sites,
        _model,
        algorithm="fedopt",
        rounds=2,
        lr=0.01,
        options={"server_opt": "sgd", "server_lr": 1.0, "beta1": 0.0},
        on_round=lambda r, models: snapshots.append(copy.deepcopy(to_numpy(next(iter(models.values()))))),
        **LOCAL,
    )
    fit = run_image_federation(
        _model,
        sites,
        LocalTrainConfig(lr=0.01, **LOCAL),
        rounds=2,
        seed=0,
    )
    expected = to_numpy(fit.model)
    got = snapshots[fit.best_round - 1]
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, atol=1e-5)
