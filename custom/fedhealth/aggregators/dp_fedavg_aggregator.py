"""Server-side client-level DP (DP-FedAvg; McMahan et al. 2018) as a ScatterAndGather aggregator.

Each contribution is validated as by :class:`RobustAggregator` (names, shapes, finite values); at
aggregation each site's update is clipped to ``clip_norm``, the clipped updates are summed over
``expected_sites`` and Gaussian noise of standard deviation ``noise_multiplier * clip_norm /
expected_sites`` is added (:func:`fedhealth.privacy.client_dp.dp_fedavg`). An RDP accountant over
rounds gives the site-level ε after every round, logged and written to
``fedhealth_client_dp_ledger.json`` in the server's run folder (and announced with the
``fedhealth.client_dp_round`` event, so the run report shows it). Once another round would pass
``target_epsilon``, the aggregator releases no further change: the global model stays as it is.

With ``expected_sites < total_sites`` the accountant counts on a sampling workflow
(:class:`~fedhealth.workflows.sampled_scatter_and_gather.SampledScatterAndGather`, which refuses to
start when its q = K/N differs from ``expected_sites / total_sites``): each round is accounted at
the rate the workflow's ``fedhealth.sites_sampled`` event reports for it (above q when fewer sites
were connected), and a round that no workflow sampled is refused instead of being accounted at a
rate it did not have. A Poisson round that sampled no site still releases the noise (and counts).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from nvflare.apis.dxo import DataKind
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable

from fedhealth.aggregators.robust_aggregator import RobustAggregator
from fedhealth.constants import (
    CLIENT_DP_LEDGER_FILE,
    EVENT_CLIENT_DP_ROUND,
    EVENT_SITES_SAMPLED,
    PROP_CLIENT_DP_ROUND,
    PROP_SITES_SAMPLED,
)


class DPFedAvgAggregator(RobustAggregator):
    """DP-FedAvg aggregation with its own accountant; config per job.

    Args:
        clip_norm: L2 bound C of each site's update (weights minus global weights).
        expected_sites: m, the sites expected per round (the fixed denominator).
        total_sites: sites in the federation (sampling rate m / total_sites); defaults to ``expected_sites``.
        target_epsilon: site-level ε after ``rounds`` rounds; sizes the noise (or give ``noise_multiplier``).
        rounds: rounds the noise is sized for (with ``target_epsilon``).
        noise_multiplier: sigma, when set directly (then ε is only reported, not enforced).
        delta: δ of the site-level guarantee, below ``1 / total_sites``.
        seed: seeds the noise (``None``: fresh randomness, for production).
        expected_data_kind: ``"WEIGHTS"`` or ``"WEIGHT_DIFF"``.
    """

    def __init__(
        self,
        *,
        clip_norm: float,
        expected_sites: int,
        total_sites: int | None = None,
        target_epsilon: float | None = None,
        rounds: int | None = None,
        noise_multiplier: float | None = None,
        delta: float = 1e-3,
        seed: int | None = None,
        expected_data_kind: str = DataKind.WEIGHTS,
    ) -> None:
        super().__init__(rule="mean", max_norm_ratio=None, expected_data_kind=expected_data_kind)
        total = total_sites or expected_sites
        if clip_norm <= 0:
            raise ValueError(f"clip_norm must be positive, got {clip_norm}.")
        if not 1 <= expected_sites <= total:
            raise ValueError(
                f"expected_sites must be between 1 and total_sites ({total}), got {expected_sites}."
            )
        if (target_epsilon is None) == (noise_multiplier is None):
            raise ValueError(
                "Give either target_epsilon (with rounds) or noise_multiplier, not both or neither."
            )
        if target_epsilon is not None and (rounds is None or rounds < 1 or target_epsilon <= 0):
            raise ValueError("target_epsilon must be positive and needs rounds >= 1 to size the noise.")
        if noise_multiplier is not None and noise_multiplier <= 0:
            raise ValueError(f"noise_multiplier must be positive, got {noise_multiplier}.")
        if not 0 < delta < 1 / total:
            raise ValueError(
                f"delta {delta:g} must be below 1/total_sites = {1 / total:g} for a site-level guarantee."
            )
        self.clip_norm = clip_norm
        self.expected_sites = expected_sites
        self.total_sites = total
        self.sample_rate = expected_sites / total
        self.target_epsilon = target_epsilon
        self.rounds = rounds
        self.sigma = noise_multiplier
        self.delta = delta
        self.seed = seed
        self.accountant = None
        self.ledger: list[dict] = []
        self._rng = np.random.default_rng(seed)
        self._path: Path | None = None
        self._sampled: dict[int, dict] = {}  # round -> the sampling workflow's draw

    def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
        super().handle_event(event_type, fl_ctx)
        if event_type == EventType.START_RUN:
            self._start(fl_ctx)
        elif event_type == EVENT_SITES_SAMPLED:
            draw = fl_ctx.get_prop(PROP_SITES_SAMPLED)
            if isinstance(draw, dict) and draw.get("round") is not None:
                self._sampled[int(draw["round"])] = dict(draw)

    def _start(self, fl_ctx: FLContext | None = None) -> None:
        from fedhealth.privacy.client_dp import ClientDPAccountant, client_noise_multiplier

        if self.sigma is None:
            self.sigma = client_noise_multiplier(
                target_epsilon=self.target_epsilon,
                delta=self.delta,
                rounds=self.rounds,
                sample_rate=self.sample_rate,
            )
        self.accountant = ClientDPAccountant(self.sigma, self.sample_rate, self.delta)
        self.ledger = []
        self._sampled = {}
        engine = fl_ctx.get_engine() if fl_ctx is not None else None
        if engine is not None and hasattr(engine, "get_workspace"):
            self._path = Path(engine.get_workspace().get_run_dir(fl_ctx.get_job_id())) / CLIENT_DP_LEDGER_FILE

    def aggregate(self, fl_ctx: FLContext) -> Shareable:
        from fedhealth.privacy.budget import EPSILON_SLACK
        from fedhealth.privacy.client_dp import dp_fedavg

        if self.accountant is None:
            self._start(fl_ctx)
        current_round, received, reference = self._take_round(fl_ctx)
        if reference is None:
            return self._result({}, {})
        unchanged = {k: np.zeros(np.shape(v)) for k, v in reference.items()}
        draw = self._sampled.pop(current_round, None) if current_round is not None else None
        if draw is None and self.sample_rate < 1:
            self.system_panic(
                f"Round {current_round}: DPFedAvgAggregator accounts a sample rate of {self.sample_rate:.4f} "
                f"(expected_sites {self.expected_sites} / total_sites {self.total_sites}), but no sampling "
                "workflow chose this round's sites, so every site may have trained: use "
                "fedhealth.workflows.sampled_scatter_and_gather.SampledScatterAndGather, or set total_sites "
                "equal to expected_sites. No change is released.",
                fl_ctx,
            )
            return self._result(unchanged, reference)
        rate = float(draw["rate"]) if draw is not None else self.sample_rate
        next_epsilon = self.accountant.epsilon_after(rate)
        if self.target_epsilon is not None and next_epsilon > self.target_epsilon + EPSILON_SLACK:
            self.log_error(
                fl_ctx,
                f"Round {current_round}: DP-FedAvg budget spent (epsilon would reach {next_epsilon:.3f} > "
                f"{self.target_epsilon}); the global model stays unchanged.",
            )
            return self._result(unchanged, reference)
        nobody_sampled = draw is not None and not draw.get("sampled")
        if not received and not nobody_sampled:
            return self._result(unchanged, reference)
        sites = sorted(received)
        # A Poisson round that drew no site releases the noise alone (a zero update), as the analysis assumes.
        updates = [self._update(received[s][0], reference) for s in sites] or [unchanged]
        aggregate = dp_fedavg(
            updates,
            clip_norm=self.clip_norm,
            noise_multiplier=self.sigma,
            expected_sites=self.expected_sites,
            rng=self._rng,
        )
        self.accountant.step(rate)
        entry = {
            "round": current_round,
            "epsilon": self.accountant.epsilon(),
            "delta": self.delta,
            "noise_multiplier": self.sigma,
            "clip_norm": self.clip_norm,
            "sample_rate": rate,
            "planned_sample_rate": self.sample_rate,
            "expected_sites": self.expected_sites,
            "sites": sites,
        }
        self.ledger.append(entry)
        if self._path is not None:
            self._path.write_text(json.dumps(self.ledger, indent=2))
        if fl_ctx.get_engine() is not None:  # a bare FLContext (unit tests) has no engine to fire through
            self.fire_event_with_data(EVENT_CLIENT_DP_ROUND, fl_ctx, PROP_CLIENT_DP_ROUND, dict(entry))
        self.log_info(
            fl_ctx,
            f"Round {current_round}: DP-FedAvg of {len(sites)} clipped update(s), sigma={self.sigma:.3f}, "
            f"C={self.clip_norm:g}, q={rate:.3f}; site-level epsilon so far {entry['epsilon']:.3f} "
            f"(delta={self.delta:g})",
        )
        return self._result(aggregate, reference)
