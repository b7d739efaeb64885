"""Augmentation multiplicity in DP-SGD (De et al. 2022): K copies per image, averaged before clipping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fedhealth.imaging.transforms import random_affine_batch
from fedhealth.models.cnn import SmallCNN
from fedhealth.models.tabular import TabularNet
from fedhealth.privacy.dp_config import DPConfig
from fedhealth.privacy.dp_sgd import PrivateTrainer, average_copies


def _images(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype("float32")
    x = rng.normal(size=(n, 1, 28, 28)).astype("float32") + y[:, None, None, None]
    return x, y


def _trainer(augmult: int, **kw) -> PrivateTrainer:
    torch.manual_seed(0)
    x, y = _images()
    dp = DPConfig(target_epsilon=2.0, augmult=augmult, **kw)
    return PrivateTrainer(SmallCNN(width=4), x, y, dp, batch_size=8, steps_per_round=2, rounds=2)


@pytest.mark.parametrize("k", [2, 3])
def test_each_images_gradient_is_the_mean_over_its_k_augmented_copies(k: int) -> None:
    trainer = _trainer(k)
    xb, yb = torch.as_tensor(_images(5, seed=1)[0]), torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    state = trainer.aug_generator.get_state()
    trainer.optimizer.zero_grad()
    trainer._backward(xb, yb)
    named = dict(trainer.module._module.named_parameters())
    assert all(p.grad_sample.shape == (5, *p.shape) for p in named.values())  # one row per image, not 5k

    gen = torch.Generator()
    gen.set_state(state)
    copies = random_affine_batch(xb.repeat_interleave(k, dim=0), gen)  # the same draws as the trainer's
    plain = SmallCNN(width=4)
    plain.load_state_dict(trainer.module._module.state_dict())
    for i in range(5):
        per_copy = []
        for j in range(k):
            plain.zero_grad()
            out = plain(copies[i * k + j : i * k + j + 1])
            nn.BCEWithLogitsLoss()(out, yb[i : i + 1].view_as(out)).backward()
            per_copy.append({n: p.grad.clone() for n, p in plain.named_parameters()})
        for name, p in named.items():
            expected = torch.stack([g[name] for g in per_copy]).mean(dim=0)
            torch.testing.assert_close(p.grad_sample[i], expected, rtol=1e-4, atol=1e-5)


def test_average_copies_refuses_rows_that_are_not_k_copies() -> None:
    layer = nn.Linear(3, 1)
    layer.weight.grad_sample = torch.zeros(7, 1, 3)
    with pytest.raises(ValueError, match="7 rows are not K=2 copies"):
        average_copies(layer, 2)


def test_augmult_trains_and_spends_the_same_epsilon_as_without() -> None:
    spent = {}
    for k in (0, 4):
        trainer = _trainer(k)
        model = SmallCNN(width=4)
        before = [p.detach().clone() for p in model.parameters()]
        stats = trainer.train_round(model, lr=1e-2, round_index=0)
        assert np.isfinite(stats["train_loss"]) and stats["steps"] == 2.0
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
        spent[k] = trainer.epsilon
    assert spent[4] == pytest.approx(spent[0], rel=1e-12)  # averaging before clipping costs no privacy
    assert 0 < spent[0] < 2.0


def test_augmult_on_tabular_inputs_is_refused() -> None:
    x = np.zeros((30, 14), dtype="float32")
    y = (np.arange(30) % 2).astype("float32")
    with pytest.raises(ValueError, match=r"augmult=4 augments images \(n, C, H, W\).*shape \(30, 14\)"):
        PrivateTrainer(
            TabularNet(in_features=14),
            x,
            y,
            DPConfig(1.0, augmult=4),
            batch_size=8,
            steps_per_round=1,
            rounds=1,
        )


def test_batch_jitter_keeps_shapes_is_seeded_and_off_at_prob_zero() -> None:
    x = torch.as_tensor(_images(6)[0])
    same = random_affine_batch(x, torch.Generator().manual_seed(3), prob=0.0)
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    a = random_affine_batch(x, torch.Generator().manual_seed(3), prob=1.0)
    b = random_affine_batch(x, torch.Generator().manual_seed(3), prob=1.0)
    assert a.shape == x.shape and torch.equal(a, b)
    assert float((a - x).abs().mean()) > 0.1  # every image moved
    flat = torch.full((2, 1, 28, 28), 0.7)
    torch.testing.assert_close(random_affine_batch(flat, prob=1.0), flat)  # border padding adds no edge
    with pytest.raises(ValueError, match=r"needs a \(B, C, H, W\) batch, got shape \(6, 28\)"):
        random_affine_batch(torch.zeros(6, 28))
