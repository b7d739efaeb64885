"""FLARE's ScatterAndGather with client sampling: each round only the sampled sites get the train task.

FLARE 2.9's ``ScatterAndGather`` sends the train task to every connected site (``targets=None``)
through ``broadcast_and_wait``. This subclass changes that one call and nothing of FLARE's control
flow: for the train task it draws the round's sites (:class:`fedhealth.algorithms.sampling.SiteSampler`:
seeded K of N, or each site with probability K/N) and passes them as the targets. Every round's draw
is announced with the ``fedhealth.sites_sampled`` event, which the run recorder keeps, so the report
tells "not sampled" apart from "sampled but sent nothing".

With client-level DP (an aggregator with a ``sample_rate``, e.g.
:class:`~fedhealth.aggregators.dp_fedavg_aggregator.DPFedAvgAggregator`) the run refuses to start when
the aggregator's accountant assumes another rate than this workflow's q = K/N.
"""

from __future__ import annotations

import math

from nvflare.apis.controller_spec import Task
from nvflare.apis.fl_context import FLContext
from nvflare.apis.signal import Signal
from nvflare.app_common.workflows.scatter_and_gather import ScatterAndGather

from fedhealth.algorithms.sampling import SiteSampler, check_settings
from fedhealth.constants import EVENT_SITES_SAMPLED, PROP_SITES_SAMPLED


class SampledScatterAndGather(ScatterAndGather):
    """ScatterAndGather whose train task goes to K sampled sites a round.

    Args:
        clients_per_round: K, a count (int) or a fraction of the job's sites (float in (0, 1], rounded up).
        min_clients: results a round waits for (FLARE's meaning); at most K. A round whose sample is
            smaller (Poisson, or fewer sites connected) waits for all of its sampled sites.
        sampling: ``"fixed"`` (exactly K of N) or ``"poisson"`` (each site with probability K/N; the
            sampling Opacus's RDP analysis assumes).
        sampling_seed: an int makes the draws reproducible; ``null`` (production) a fresh secret seed.
        num_sites: N; ``None``: the sites of the job connected when the workflow starts.
        **kwargs: every other argument of FLARE's ``ScatterAndGather`` (``num_rounds``,
            ``train_timeout``, ...).
    """

    def __init__(
        self,
        *,
        clients_per_round: int | float,
        min_clients: int,
        sampling: str = "fixed",
        sampling_seed: int | None = None,
        num_sites: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(min_clients=min_clients, **kwargs)
        self.clients_per_round = clients_per_round
        self.sampling = sampling
        self.sampling_seed = sampling_seed
        self.num_sites = num_sites
        self.sampler: SiteSampler | None = None
        check_settings(clients_per_round=clients_per_round, mode=sampling, seed=sampling_seed)
        if num_sites is not None:  # everything is known now: a bad config fails at load, not at run
            self.sampler = self._make_sampler(num_sites)
        elif isinstance(clients_per_round, int):
            _check_min_clients(min_clients, clients_per_round)

    def _make_sampler(self, num_sites: int) -> SiteSampler:
        sampler = SiteSampler(
            clients_per_round=self.clients_per_round,
            num_sites=num_sites,
            mode=self.sampling,
            seed=self.sampling_seed,
        )
        _check_min_clients(self._min_clients, sampler.k)
        return sampler

    def start_controller(self, fl_ctx: FLContext) -> None:
        super().start_controller(fl_ctx)
        try:
            if self.sampler is None:
                self.sampler = self._make_sampler(len(self._engine.get_clients()))
            self._check_aggregator_rate()
        except ValueError as e:
            self.system_panic(f"{type(self).__name__}: {e}", fl_ctx)
            return
        s = self.sampler
        self.log_info(
            fl_ctx,
            f"Client sampling: {s.k} of {s.n} sites a round ({s.mode}, q = {s.rate:.3f}, "
            f"{'seeded' if s.seeded else 'fresh secret seed'}).",
        )

    def _check_aggregator_rate(self) -> None:
        """Refuse a client-level DP aggregator whose accountant assumes another sampling rate."""
        rate = getattr(self.aggregator, "sample_rate", None)
        if rate is None or math.isclose(rate, self.sampler.rate, rel_tol=0, abs_tol=1e-9):
            return
        expected = getattr(self.aggregator, "expected_sites", None)
        raise ValueError(
            f"the aggregator '{self.aggregator_id}' accounts client-level DP with sample rate {rate:.4f}"
            + (f" (expected_sites {expected})" if expected is not None else "")
            + f", but this workflow samples {self.sampler.k} of {self.sampler.n} sites a round "
            f"(q = {self.sampler.rate:.4f}). Set the aggregator's expected_sites to {self.sampler.k} and "
            f"total_sites to {self.sampler.n}, or change clients_per_round."
        )

    def broadcast_and_wait(
        self,
        task: Task,
        fl_ctx: FLContext,
        targets=None,
        min_responses: int = 1,
        wait_time_after_min_received: int = 0,
        abort_signal: Signal | None = None,
    ):
        """The train task goes to the round's sample; any other task as asked."""
        if task.name != self.train_task_name or targets is not None:
            return super().broadcast_and_wait(
                task, fl_ctx, targets, min_responses, wait_time_after_min_received, abort_signal
            )
        if self.sampler is None:
            raise RuntimeError("client sampling was not set up (the workflow did not start)")
        draw = self.sampler.sample([c.name for c in self._engine.get_clients()], self._current_round)
        wait_for = min(min_responses, len(draw.sampled))
        record = {
            **draw.as_record(),
            "k": self.sampler.k,
            "n": self.sampler.n,
            "planned_rate": self.sampler.rate,
        }
        record.update(mode=self.sampler.mode, seeded=self.sampler.seeded, min_responses=wait_for)
        self.fire_event_with_data(EVENT_SITES_SAMPLED, fl_ctx, PROP_SITES_SAMPLED, record)
        note = f" (only {len(draw.connected)} of {self.sampler.n} sites connected)" if draw.short else ""
        chosen = ", ".join(draw.sampled) or "no site"
        self.log_info(fl_ctx, f"Round {draw.round}: sampled {chosen} of {len(draw.connected)}{note}.")
        if not draw.sampled:  # Poisson sampling drew nobody: the round trains nothing
            return None
        self._current_num_targets = len(draw.sampled)  # FLARE's result-error tolerance counts these
        return super().broadcast_and_wait(
            task, fl_ctx, list(draw.sampled), wait_for, wait_time_after_min_received, abort_signal
        )


def _check_min_clients(min_clients: int, k: int) -> None:
    if min_clients > k:
        raise ValueError(
            f"min_clients {min_clients} is more than the {k} sites sampled a round (clients_per_round): "
            f"a round could never reach it. Set min_clients to at most {k}."
        )
