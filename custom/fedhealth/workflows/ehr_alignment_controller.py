"""Federated feature alignment before training: counts in, one schema out, no patient row moves.

Every site profiles its own table against the job's data dictionary and sends small-cell-suppressed
counts and sums (:mod:`fedhealth.ehr.profile`); the server decides the model's features by the job's
policy (:mod:`fedhealth.ehr.alignment`), keeps the schema and the received profiles in its run
folder (``ehr_schema.json``, ``ehr_profiles.json``: what the report reads and what an auditor
checks), and sends the schema, with imputation values and scaling, back (without the per-site
counts: no site learns another's). A site that declines (too few rows, an unusable table) is named;
the job goes on while ``min_clients`` sites take part, unless ``ignore_result_error`` is false: then a
site's error ends the job at once with its reason, as ScatterAndGather's strict mode does in training
(where a site left out of the schema would fail every round). A site that does not answer within
``task_timeout`` is left out either way.

FLARE's ``StatisticsController`` is not used: its results stay in a file at the server, while here the
sites need the outcome before training, and its min-count check removes a feature everywhere rather
than suppressing one site's small cell.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from nvflare.apis.controller_spec import ClientTask
from nvflare.apis.dxo import DXO, DataKind, from_shareable
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.signal import Signal

from fedhealth.constants import EHR_SCHEMA_FILE, TASK_EHR_PROFILE, TASK_SET_SCHEMA
from fedhealth.ehr.alignment import AlignmentPolicy, align
from fedhealth.ehr.dictionary import DataDictionary
from fedhealth.ehr.profile import check_profile
from fedhealth.workflows.fed_stats_controller import FedStatsController, task_failures

PROFILES_FILE = "ehr_profiles.json"


def aligned_sites(fl_ctx: FLContext) -> list[str] | None:
    """The sites whose profiles made this job's aligned schema (None: no alignment ran in this job).

    A later workflow that needs every one of its sites (histogram boosting) runs on these: a site that
    declined the alignment holds no schema and could not train.
    """
    run_dir = Path(fl_ctx.get_engine().get_workspace().get_run_dir(fl_ctx.get_job_id()))
    path = run_dir / EHR_SCHEMA_FILE
    if not path.is_file():
        return None
    return sorted(json.loads(path.read_text()).get("sites", {}))


def _answered_with_error(client_tasks: list[ClientTask]) -> list[str]:
    """The reasons of the sites that answered with an error (not of those that did not answer)."""
    return task_failures([ct for ct in client_tasks if ct.result is not None])


class EhrAlignmentController(FedStatsController):
    """Collects the sites' profiles, aligns the features, broadcasts the schema.

    Args:
        dictionary: the job's data dictionary (the same data as the sites' ``task_args["dictionary"]``).
        min_clients: sites whose profile the alignment needs; fewer ends the job with the sites' reasons.
        task_timeout: seconds to wait for the sites.
        mode, min_sites_with_feature, max_missing_fraction, indicators, imputation, min_cell: the
            :class:`~fedhealth.ehr.alignment.AlignmentPolicy`.
        wait_time_after_min_received: seconds to wait for the other sites once ``min_clients`` answered
            (a site that declines is named; one that is slower than this is left out).
        ignore_result_error: ``True``: a site that declines or fails is left out while ``min_clients``
            sites remain; ``False``: it ends the job, with its reason.
    """

    def __init__(
        self,
        *,
        dictionary: Mapping[str, object],
        min_clients: int = 2,
        task_timeout: int = 120,
        mode: str = "union",
        min_sites_with_feature: int = 2,
        max_missing_fraction: float = 0.9,
        indicators: bool = True,
        imputation: str = "mean",
        min_cell: int = 5,
        wait_time_after_min_received: int = 10,
        ignore_result_error: bool = True,
    ) -> None:
        super().__init__(min_clients=min_clients, task_timeout=task_timeout)
        self.dictionary = DataDictionary.from_dict(dictionary)
        self.policy = AlignmentPolicy(
            mode=mode,
            min_sites_with_feature=min_sites_with_feature,
            max_missing_fraction=max_missing_fraction,
            indicators=indicators,
            imputation=imputation,
            min_cell=min_cell,
        )
        self.wait_after_min = wait_time_after_min_received
        self.ignore_result_error = bool(ignore_result_error)
        self.schema: dict | None = None

    def control_flow(self, abort_signal: Signal, fl_ctx: FLContext) -> None:
        request = DXO(DataKind.COLLECTION, data={"min_cell": self.policy.min_cell}).to_shareable()
        client_tasks = self._broadcast(
            TASK_EHR_PROFILE, request, fl_ctx, abort_signal, wait_after_min=self.wait_after_min
        )
        if abort_signal.triggered:
            return
        failures = self._failures(client_tasks)
        errors = _answered_with_error(client_tasks)  # failures less the sites that did not answer
        profiles = {}
        for ct in client_tasks:
            if ct.result is None or ct.result.get_return_code(ReturnCode.OK) != ReturnCode.OK:
                continue
            try:
                profiles[ct.client.name] = check_profile(from_shareable(ct.result).data, self.dictionary)
            except ValueError as exc:
                failures.append(f"site {ct.client.name} sent an unusable profile: {exc}")
                errors.append(failures[-1])
        if errors and not self.ignore_result_error:
            self.system_panic(f"feature alignment failed: {'; '.join(errors)}", fl_ctx)
            return
        for reason in failures:
            self.log_warning(fl_ctx, f"alignment without a site: {reason}")
        if len(profiles) < self.min_clients:
            reason = "; ".join(failures) or f"only {len(profiles)} of {self.min_clients} sites answered"
            self.system_panic(f"feature alignment failed: {reason}", fl_ctx)
            return
        try:
            self.schema = align(profiles, self.dictionary, self.policy)
        except ValueError as exc:
            self.system_panic(f"feature alignment failed: {exc}", fl_ctx)
            return
        run_dir = Path(fl_ctx.get_engine().get_workspace().get_run_dir(fl_ctx.get_job_id()))
        (run_dir / PROFILES_FILE).write_text(json.dumps(profiles, indent=1, sort_keys=True))
        (run_dir / EHR_SCHEMA_FILE).write_text(json.dumps(self.schema, indent=1))
        dropped = ", ".join(f"{d['name']} ({d['reason']})" for d in self.schema["dropped"]) or "none"
        self.log_info(
            fl_ctx,
            f"aligned {len(self.schema['features'])} features into "
            f"{len(self.schema['columns'])} model columns from {len(profiles)} sites; dropped: {dropped}",
        )
        targets = sorted(profiles)
        # The sites get what they need to encode; the per-site counts stay at the server (the report's).
        for_sites = {k: v for k, v in self.schema.items() if k != "sites"}
        acks = self._broadcast(
            TASK_SET_SCHEMA,
            DXO(DataKind.COLLECTION, data=for_sites).to_shareable(),
            fl_ctx,
            abort_signal,
            targets=targets,
            wait_after_min=self.wait_after_min,
        )
        failures = self._failures(acks)
        strict = bool(_answered_with_error(acks)) and not self.ignore_result_error
        if strict or len(targets) - len(failures) < self.min_clients:
            self.system_panic(f"sites could not take the aligned schema: {'; '.join(failures)}", fl_ctx)
