"""Clustered federated learning as a FLARE workflow: one model per group of similar hospitals.

FLARE 2.9 has no clustered workflow. This controller runs FedAvg inside each cluster (sample-
weighted, the sites' ``NUM_STEPS_CURRENT_ROUND``), and from ``split_round`` on splits a cluster in
two when its sites' updates point apart (cosine similarity, Sattler et al. 2021; the FLARE-free
core is :mod:`fedhealth.algorithms.clustering`). With ``cluster_by`` it groups the sites instead by
the non-PHI fields they declare in their own site config (``metadata`` in
``local/fedhealth_site.json``, e.g. scanner or hospital type), which the sites send with their
updates. The clusters of every round are logged and written to ``fedhealth_clusters.json`` in the
server's run folder; the persisted model (for cross-site evaluation) is the largest cluster's.

Every site's weights are checked before they are averaged or clustered, as
:class:`~fedhealth.aggregators.robust_aggregator.RobustAggregator` checks them: the parameter names
and shapes of the model the site was sent, finite values only, a positive sample weight, and an update
norm within ``max_norm_ratio`` times the round's median (:func:`fedhealth.training.robust.screen_updates`).
A site that fails is left out of that round's averages and split, logged by name and announced with
``fedhealth.update_rejected``; it stays in its cluster and gets the next round's model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from nvflare.apis.controller_spec import Task
from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.signal import Signal
from nvflare.app_common.abstract.model import ModelLearnableKey, make_model_learnable
from nvflare.app_common.app_constant import AppConstants
from nvflare.app_common.app_event_type import AppEventType

from fedhealth import constants as C
from fedhealth.algorithms.clustering import metadata_clusters, split_if_apart
from fedhealth.training.aggregation import weighted_average
from fedhealth.training.robust import screen_updates
from fedhealth.training.schedule import lr_for_round
from fedhealth.workflows.step_controller import StepController


class ClusteredController(StepController):
    """FedAvg per cluster; clusters from update similarity or from declared site metadata.

    Args:
        num_rounds: training rounds.
        min_clients: sites that must take part; fewer, or a failed site, ends the job with reasons.
        persistor_id: the model persistor (initial model; receives the largest cluster's model).
        lr: the sites' learning rate of round 0 (``lr * gamma ** round`` goes with each task).
        gamma: per-round decay.
        split_round: first round (from 0) after whose updates a cluster may split; with
            ``cluster_by``, the round the metadata clusters start (0 and 1 both start after the
            first round: the metadata arrives with the first updates).
        split_threshold: split when the two groups' largest cross cosine similarity is below this.
        max_clusters: no more clusters than this.
        cluster_by: metadata fields to group by (``[]``: cluster by update similarity).
        train_timeout: seconds a round waits for a cluster's sites (0: no limit).
        train_task_name: the sites' train task.
        max_norm_ratio: leave out a site whose update norm is above this multiple of the round's
            median (3 or more sites); ``None`` turns the norm check off (the other checks stay).
    """

    def __init__(
        self,
        *,
        num_rounds: int,
        min_clients: int,
        persistor_id: str = "persistor",
        lr: float,
        gamma: float = 1.0,
        split_round: int = 5,
        split_threshold: float = 0.0,
        max_clusters: int = 2,
        cluster_by: list[str] | None = None,
        train_timeout: int = 0,
        train_task_name: str = C.TASK_TRAIN,
        max_norm_ratio: float | None = 10.0,
    ) -> None:
        super().__init__()
        if num_rounds < 1 or min_clients < 1 or max_clusters < 1:
            raise ValueError("num_rounds, min_clients and max_clusters must each be at least 1.")
        if lr <= 0 or not 0 < gamma <= 1:
            raise ValueError(f"Need lr > 0 and gamma in (0, 1]; got lr={lr}, gamma={gamma}.")
        if not -1 <= split_threshold <= 1 or split_round < 0:
            raise ValueError(
                f"split_threshold must be a cosine in [-1, 1] and split_round >= 0; "
                f"got {split_threshold} and {split_round}."
            )
        if max_norm_ratio is not None and not max_norm_ratio >= 1:
            raise ValueError(
                f"max_norm_ratio must be at least 1 or None to turn the check off, got {max_norm_ratio}."
            )
        self.num_rounds, self.min_clients, self.persistor_id = num_rounds, min_clients, persistor_id
        self.lr, self.gamma = lr, gamma
        self.split_round, self.split_threshold, self.max_clusters = split_round, split_threshold, max_clusters
        self.cluster_by = list(cluster_by or [])
        self.train_timeout = train_timeout
        self.train_task_name = train_task_name
        self.max_norm_ratio = max_norm_ratio
        self.history: list[list[list[str]]] = []
        self.rejections: list[dict[str, object]] = []

    def start_controller(self, fl_ctx: FLContext) -> None:
        self.persistor = self._engine.get_component(self.persistor_id)
        if self.persistor is None:
            self.system_panic(f"no model persistor with id {self.persistor_id!r} in the job", fl_ctx)

    def _train_cluster(self, sites, weights, r, k, fl_ctx, abort_signal) -> dict[str, DXO] | str:
        """One cluster's round: the sites' result DXOs, or the reason the round failed."""
        data = DXO(DataKind.WEIGHTS, data=weights)
        data.set_meta_prop(C.META_LEARNING_RATE, lr_for_round(self.lr, self.gamma, r))
        data.set_meta_prop(C.META_ROUND, r)
        data.set_meta_prop(C.META_CLUSTER, k)
        shareable = data.to_shareable()
        shareable.set_header(AppConstants.CURRENT_ROUND, r)
        task = Task(name=self.train_task_name, data=shareable, timeout=self.train_timeout)
        self.broadcast_and_wait(
            task, fl_ctx, targets=sites, min_responses=len(sites), abort_signal=abort_signal
        )
        out = {}
        for ct in task.client_tasks:
            rc = ct.result.get_return_code(ReturnCode.OK) if ct.result is not None else "NO_RESULT"
            if rc != ReturnCode.OK:
                return (
                    ct.result.get_header(C.HEADER_ERROR, None) if ct.result else None
                ) or f"site {ct.client.name} returned {rc}"
            out[ct.client.name] = from_shareable(ct.result)
        missing = sorted(set(sites) - set(out))
        return f"no answer from {missing}" if missing else out

    def control_flow(self, abort_signal: Signal, fl_ctx: FLContext) -> None:
        learnable = self.persistor.load(fl_ctx)
        start = {k: np.asarray(v) for k, v in learnable[ModelLearnableKey.WEIGHTS].items()}
        sites = sorted(c.name for c in self._engine.get_clients())
        if len(sites) < self.min_clients:
            self.system_panic(f"clustered FL needs {self.min_clients} sites, {len(sites)} connected", fl_ctx)
            return
        clusters, models = [sites], [start]
        for r in range(self.num_rounds):
            fl_ctx.set_prop(AppConstants.CURRENT_ROUND, r, private=True, sticky=True)
            self.fire_event(AppEventType.ROUND_STARTED, fl_ctx)
            results: dict[str, DXO] = {}
            for k, (group, weights) in enumerate(zip(clusters, models, strict=True)):
                got = self._train_cluster(group, weights, r, k, fl_ctx, abort_signal)
                if abort_signal.triggered:
                    return
                if isinstance(got, str):
                    self.system_panic(f"clustered FL round {r} failed: {got}", fl_ctx)
                    return
                results.update(got)
            starts = {s: model for group, model in zip(clusters, models, strict=True) for s in group}
            accepted = self._screen(results, starts, r, fl_ctx)
            clusters, models = self._next_clusters(clusters, models, accepted, r, metadata_from=results)
            self._record(clusters, r, fl_ctx)
            sizes = [sum(_weight(accepted[s]) for s in g if s in accepted) for g in clusters]
            largest = models[int(np.argmax(sizes))]
            self.persistor.save(
                make_model_learnable({k: v.astype("float32") for k, v in largest.items()}, {}), fl_ctx
            )
            self.fire_event(AppEventType.ROUND_DONE, fl_ctx)

    def _screen(
        self, results: dict[str, DXO], starts: dict[str, dict[str, np.ndarray]], r: int, fl_ctx: FLContext
    ) -> dict[str, DXO]:
        """The results that pass the update checks; each other one is logged and announced by site."""
        reasons = {}
        for site, dxo in results.items():
            if dxo.data_kind != DataKind.WEIGHTS or not isinstance(dxo.data, dict) or not dxo.data:
                kind = getattr(dxo.data_kind, "value", dxo.data_kind)
                reasons[site] = f"It holds {kind} without parameters; WEIGHTS are expected."
            elif not (np.isfinite(_weight(dxo)) and _weight(dxo) > 0):
                steps = dxo.get_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND)
                reasons[site] = f"Its NUM_STEPS_CURRENT_ROUND weight {steps!r} is not a positive number."
        checked = {s: results[s].data for s in results if s not in reasons}
        reasons.update(screen_updates(checked, starts, max_norm_ratio=self.max_norm_ratio))
        for site in sorted(reasons):
            record = {"site": site, "round": r, "reason": reasons[site]}
            self.rejections.append(record)
            self.log_error(fl_ctx, f"Rejected the update of {site} in round {r}: {reasons[site]}")
            if fl_ctx.get_engine() is not None:
                self.fire_event_with_data(C.EVENT_UPDATE_REJECTED, fl_ctx, C.PROP_REJECTION, dict(record))
        return {s: dxo for s, dxo in results.items() if s not in reasons}

    def _next_clusters(self, clusters, models, results, r, *, metadata_from=None):
        """Average inside each cluster, then regroup by metadata or split by update similarity.

        ``results`` are the accepted sites' DXOs; a cluster whose sites were all rejected keeps its
        model, and one with a rejected site does not split this round. Metadata comes from
        ``metadata_from`` (every site's result, rejected ones included), else from ``results``.
        """

        def average(group, start):
            kept = [s for s in group if s in results]
            if not kept:
                return start
            return weighted_average([results[s].data for s in kept], [_weight(results[s]) for s in kept])

        if self.cluster_by:
            if r != max(self.split_round - 1, 0):  # metadata arrives with the first updates
                return clusters, [average(g, m) for g, m in zip(clusters, models, strict=True)]
            everyone = results if metadata_from is None else metadata_from
            metadata = {s: everyone[s].get_meta_prop(C.META_SITE_METADATA, None) or {} for s in everyone}
            groups = metadata_clusters(metadata, self.cluster_by)
            shared = average(sorted(results), models[0])
            return groups, [shared for _ in groups]
        new_clusters, new_models = [], []
        room = self.max_clusters - len(clusters)
        for group, start in zip(clusters, models, strict=True):
            parts = None
            if room > 0 and r >= self.split_round and all(s in results for s in group):
                updates = [
                    {k: np.asarray(results[s].data[k], "float64") - start[k] for k in start} for s in group
                ]
                parts = split_if_apart(updates, threshold=self.split_threshold)
            if parts is None:
                new_clusters.append(group)
                new_models.append(average(group, start))
                continue
            room -= 1
            for part in parts:
                new_clusters.append([group[i] for i in part])
                new_models.append(average(new_clusters[-1], start))
        return new_clusters, new_models

    def _record(self, clusters: list[list[str]], r: int, fl_ctx: FLContext) -> None:
        self.history.append([list(g) for g in clusters])
        self.log_info(fl_ctx, f"round {r}: clusters {clusters}")
        run_dir = Path(self._engine.get_workspace().get_run_dir(fl_ctx.get_job_id()))
        (run_dir / C.CLUSTERS_FILE).write_text(json.dumps({"rounds": self.history}, indent=2))


def _weight(dxo: DXO) -> float:
    """A result's FedAvg weight (its ``NUM_STEPS_CURRENT_ROUND``, 1 if absent); NaN if not a number."""
    try:
        return float(dxo.get_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND, 1))
    except (TypeError, ValueError):
        return float("nan")
