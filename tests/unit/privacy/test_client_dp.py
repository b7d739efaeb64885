"""DP-FedAvg math (McMahan et al. 2018): clipping, fixed-denominator noisy mean, the round accountant."""

from __future__ import annotations

import numpy as np
import pytest
from opacus.accountants import RDPAccountant

from fedhealth.privacy.client_dp import (
    ClientDPAccountant,
    client_noise_multiplier,
    clip_update,
    dp_fedavg,
    update_norm,
)

# (update, clip, expected norm after clipping, original norm)
CLIP_CASES = [
    ({"w": np.array([3.0, 4.0])}, 1.0, 1.0, 5.0),
    ({"w": np.array([3.0, 4.0])}, 10.0, 5.0, 5.0),
    ({"a": np.array([[1.0, 2.0]]), "b": np.array([2.0])}, 1.5, 1.5, 3.0),
    ({"w": np.zeros(3)}, 1.0, 0.0, 0.0),
]
# (sigma, q, rounds, delta)
ACCOUNTING = [(1.0, 1.0, 10, 1e-3), (0.5, 1.0, 20, 1e-2), (2.0, 0.5, 50, 1e-3)]


@pytest.mark.parametrize(("update", "clip", "after", "before"), CLIP_CASES)
def test_clip_update(update: dict, clip: float, after: float, before: float) -> None:
    clipped, norm = clip_update(update, clip)
    assert norm == pytest.approx(before) and update_norm(clipped) == pytest.approx(after)
    if before > 0:  # direction kept
        ratio = clipped["w" if "w" in update else "b"] / update["w" if "w" in update else "b"]
        assert np.allclose(ratio, ratio.flat[0])


def test_without_noise_it_is_the_sum_of_clipped_updates_over_m() -> None:
    updates = [{"w": np.array([3.0, 4.0])}, {"w": np.array([0.3, 0.4])}]
    out = dp_fedavg(
        updates, clip_norm=1.0, noise_multiplier=0.0, expected_sites=4, rng=np.random.default_rng(0)
    )
    np.testing.assert_allclose(out["w"], (np.array([0.6, 0.8]) + np.array([0.3, 0.4])) / 4)


def test_noise_has_standard_deviation_sigma_c_over_m() -> None:
    updates = [{"w": np.zeros(200_000)}]
    out = dp_fedavg(
        updates, clip_norm=2.0, noise_multiplier=1.5, expected_sites=4, rng=np.random.default_rng(1)
    )
    assert np.std(out["w"]) == pytest.approx(1.5 * 2.0 / 4, rel=0.01)
    assert abs(np.mean(out["w"])) < 0.01


@pytest.mark.parametrize("bad", [{"updates": []}, {"expected_sites": 0}])
def test_bad_calls_are_refused(bad: dict) -> None:
    args = {"updates": [{"w": np.ones(2)}], "clip_norm": 1.0, "noise_multiplier": 1.0, "expected_sites": 2}
    with pytest.raises(ValueError):
        dp_fedavg(**{**args, **bad}, rng=np.random.default_rng(0))


@pytest.mark.parametrize(("sigma", "q", "rounds", "delta"), ACCOUNTING)
def test_accountant_equals_opacus_rdp(sigma: float, q: float, rounds: int, delta: float) -> None:
    accountant = ClientDPAccountant(sigma, q, delta)
    for _ in range(rounds):
        accountant.step()
    reference = RDPAccountant()
    reference.history = [(sigma, q, rounds)]
    assert accountant.epsilon() == pytest.approx(reference.get_epsilon(delta), rel=1e-9)
    assert accountant.epsilon(0) == 0.0


def test_noise_for_a_target_ends_at_the_target() -> None:
    sigma = client_noise_multiplier(target_epsilon=5.0, delta=1e-3, rounds=15)
    accountant = ClientDPAccountant(sigma, 1.0, 1e-3, rounds=15)
    assert 4.9 < accountant.epsilon() <= 5.0


def test_rounds_at_another_rate_are_composed_at_their_own_rate() -> None:
    sigma, delta = 1.7, 1e-3
    accountant = ClientDPAccountant(sigma, 0.75, delta)
    for rate in (0.75, 1.0, 0.75, None, 1.0):  # None: the planned rate
        accountant.step(rate)
    reference = RDPAccountant()
    reference.history = [(sigma, 0.75, 3), (sigma, 1.0, 2)]
    assert accountant.rounds == 5 and accountant.off_rate == {1.0: 2}
    assert accountant.epsilon() == pytest.approx(reference.get_epsilon(delta), rel=1e-9)
    planned_only = ClientDPAccountant(sigma, 0.75, delta, rounds=5)
    assert planned_only.epsilon() < accountant.epsilon()  # a round that took everyone costs more
    assert accountant.epsilon(5) == pytest.approx(planned_only.epsilon())  # planning: the planned rate


def test_epsilon_after_one_more_round_changes_nothing() -> None:
    accountant = ClientDPAccountant(1.7, 0.75, 1e-3, rounds=4)
    reference = RDPAccountant()
    reference.history = [(1.7, 0.75, 4), (1.7, 1.0, 1)]
    assert accountant.epsilon_after(1.0) == pytest.approx(reference.get_epsilon(1e-3), rel=1e-9)
    assert accountant.epsilon_after() == pytest.approx(accountant.epsilon(5))
    assert accountant.rounds == 4 and accountant.off_rate == {}


@pytest.mark.parametrize("rate", [0.0, 1.5, -0.2])
def test_a_round_rate_outside_0_1_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match=f"A round's sample rate must be in \\(0, 1\\], got {rate}"):
        ClientDPAccountant(1.0, 0.5, 1e-3).step(rate)
