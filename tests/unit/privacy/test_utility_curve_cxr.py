"""The CXR privacy–utility curve: image sites through the executor's DP-SGD code, the split, the JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fedhealth.models.image_model import ImageModel
from fedhealth.privacy.dp_config import DPConfig
from fedhealth.privacy.site_dp import site_trainer
from fedhealth_tools.privacy.utility_curve_cxr import cxr_sites, cxr_table, run_cxr_curve

SIZES = {"train": 240, "val": 60, "test": 80}


@pytest.fixture
def tiny_npz(tmp_path: Path) -> Path:
    """A PneumoniaMNIST-shaped file: 28×28 uint8 images whose brightness follows the label."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in SIZES.items():
        y = (np.arange(n) % 3 == 0).astype(np.uint8)  # 1 in 3 positive
        x = rng.integers(0, 120, size=(n, 28, 28)) + 100 * y[:, None, None]
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = x.astype(np.uint8), y[:, None]
    path = tmp_path / "pneumoniamnist.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_the_four_sites_hold_every_image_of_a_split_once(tiny_npz: Path, split: str) -> None:
    sites = cxr_sites(tiny_npz)
    again = cxr_sites(tiny_npz)
    assert [s.name for s in sites] == ["site_a", "site_b", "site_c", "site_d"]
    assert sum(len(s.arrays(split)[1]) for s in sites) == SIZES[split]
    x, y = sites[0].arrays(split)
    assert x.shape == (len(y), 1, 28, 28) and x.dtype == np.float32
    assert np.allclose(x.mean(axis=(1, 2, 3)), 0.0, atol=1e-4)  # z-scored per image
    assert all(
        np.array_equal(a.arrays(split)[1], b.arrays(split)[1]) for a, b in zip(sites, again, strict=True)
    )


def test_the_executors_site_trainer_trains_an_image_site_to_the_target(tiny_npz: Path) -> None:
    site = cxr_sites(tiny_npz)[0]
    model = ImageModel("small_cnn", 1, 1, seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = site_trainer(
        model, site, DPConfig(target_epsilon=3.0), local={"batch_size": 16, "optimizer": "adam"}, rounds=1
    )
    out = trainer.train_round(model, lr=1e-2, round_index=0)
    assert out["steps"] == np.ceil(len(site.arrays()[1]) / 16)
    assert 2.5 < trainer.epsilon <= 3.0
    assert trainer.delta == pytest.approx(0.1 / len(site.arrays()[1]))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_one_round_curve_writes_the_json_rows_and_png(tiny_npz: Path, tmp_path: Path) -> None:
    out, png = tmp_path / "curve.json", tmp_path / "curve.png"
    result = run_cxr_curve(
        epsilons=(2.0, None),
        seeds=(0, 1),
        settings={"rounds": 1, "batch_size": 16},
        lr_grid=(1e-3, 3e-3),
        dp_settings={"rounds": 2, "batch_size": 32, "local_steps": 1, "augmult": 2},
        dp_lr_grid=(1e-2,),
        tried=[{"epsilon": 1.0, "val_auc": 0.5}],
        npz=tiny_npz,
        out_json=out,
        out_png=png,
    )
    saved = json.loads(out.read_text())
    rows = saved["rows"]
    assert saved["tried"] == [{"epsilon": 1.0, "val_auc": 0.5}]
    assert saved["dp_settings"]["augmult"] == 2 and saved["settings"]["rounds"] == 1
    assert png.stat().st_size > 1000
    assert [r["target_epsilon"] for r in rows] == [2.0, None]
    private, plain = rows
    assert 1.5 < private["achieved_epsilon"] <= 2.0
    n_min = min(v["train"] for v in result["sites"].values())
    assert private["delta"] == pytest.approx(0.1 / n_min)
    assert plain["achieved_epsilon"] is None and plain["delta"] is None
    for row in rows:
        assert row["metric"] == "pooled test AUC" and len(row["metric_per_seed"]) == 2
        assert 0.0 <= row["metric_mean"] <= 1.0
    assert private["lr"] == 1e-2 and set(private["val_auc_by_lr"]) == {"0.01"}
    assert private["batch_size"] == 32 and max(private["best_round_per_seed"]) <= 2
    assert plain["lr"] in (1e-3, 3e-3) and set(plain["val_auc_by_lr"]) == {"0.001", "0.003"}
    assert plain["batch_size"] == 16 and plain["best_round_per_seed"] == [1, 1]
    table = cxr_table(result).splitlines()
    assert len(table) == 4 and table[3].startswith("| ∞ (no DP) |") and "+0.0 pts" in table[3]


@pytest.mark.parametrize(("argv", "dataset"), [([], "heart"), (["--dataset", "cxr"], "cxr")])
def test_the_command_takes_the_dataset_heart_by_default(argv: list[str], dataset: str) -> None:
    from fedhealth_tools.cli import _parser

    args = _parser().parse_args(["privacy-utility", *argv])
    assert args.dataset == dataset and args.out is None and args.png is None
