"""A Flower ServerApp's results as the kit's run files, so the kit's report reads a Flower run.

The kit's report (:mod:`fedhealth.reports.run_report`, ``fedhealth report``) reads two files from
the server's run folder of a finished job: the run record ``fedhealth_run.json``
(:mod:`fedhealth.reports.run_record`: per-round per-site metrics, round times, status) and the
cross-site file ``cross_site_val/cross_val_results.json`` (each site's validation of the final
global model, with the intervals the site computed). A FLARE job writes them with
:class:`~fedhealth.widgets.run_recorder.RunRecorder` and FLARE's cross-site workflow; a Flower
ServerApp writes them with :class:`FlowerRunLog`, from the metrics its ClientApps return.

Under FLARE's Flower integration the ServerApp process runs in the FLARE job's run folder (the
SuperLink's working directory, which its processes inherit), so ``Path.cwd()`` is the folder the
job result download holds. Aggregates only: what the sites released, never a patient value.
FLARE-free and Flower-free.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from fedhealth.atomic import write_json
from fedhealth.constants import CROSS_VAL_DIR, CROSS_VAL_FILE, RUN_RECORD_FILE
from fedhealth.reports.run_record import Failure, Gate, RunRecord, RunStatus, new_record
from fedhealth.reports.summary import round_summary

GLOBAL_MODEL = (
    "SRV_flower_global_model"  # the report takes the cross-site model named SRV_* as the global one
)


class FlowerRunLog:
    """The run record and cross-site results of one Flower run, written after every step.

    Args:
        folder: the server's run folder (where the files go).
        job_id: the FLARE job id (or the Flower run id outside FLARE).
        gate: the deployment gate's settings (primary metric, threshold, flag SD).
        num_rounds: the rounds the ServerApp will run.
    """

    def __init__(self, folder: Path, *, job_id: str, gate: Gate, num_rounds: int) -> None:
        if num_rounds < 1:
            raise ValueError(f"num_rounds must be at least 1, got {num_rounds}.")
        self.folder = Path(folder)
        self.record: RunRecord = new_record(job_id, gate)
        self.record["num_rounds"] = num_rounds
        self.record["start_round"] = 0
        self.cross: dict[str, dict[str, dict]] = {}
        self._write()

    @property
    def record_path(self) -> Path:
        return self.folder / RUN_RECORD_FILE

    @property
    def cross_path(self) -> Path:
        return self.folder / CROSS_VAL_DIR / CROSS_VAL_FILE

    def start_round(self, rnd: int) -> None:
        """Round ``rnd`` starts (its start time goes into ``round_times``)."""
        self.record["current_round"] = rnd
        self.record["round_times"].append({"round": rnd, "started": time.time()})
        self._write()

    def end_round(self, rnd: int, site_metrics: Mapping[str, Mapping[str, float]]) -> None:
        """Round ``rnd`` is aggregated from these sites' train replies (``{site: metrics}``).

        The metrics are the kit's round metrics (``train_loss``, ``n_train``, ``n_test``,
        ``global_accuracy``, ``global_auc``, ...): what a site's train reply carries in a FLARE job.
        """
        sites = {site: dict(metrics) for site, metrics in sorted(site_metrics.items())}
        entry = {"round": rnd, "sites": sites, **round_summary(sites)}
        self.record["rounds"] = [r for r in self.record["rounds"] if r["round"] != rnd] + [entry]
        self.record["completed_rounds"].append(rnd)
        if self.record["round_times"]:
            self.record["round_times"][-1]["done"] = time.time()
        self._seen(sites)
        self._write()

    def validation(self, site_validations: Mapping[str, Mapping]) -> None:
        """Each site's released validation of the final global model (``{site: validation}``)."""
        for site, metrics in sorted(site_validations.items()):
            self.cross.setdefault(site, {})[GLOBAL_MODEL] = dict(metrics)
        self._seen(site_validations)
        self.record.setdefault("tasks", [])
        self.record["tasks"] = sorted({*self.record["tasks"], "train", "validate"})
        self._write()

    def failed(self, site: str, task: str, rnd: int | None, reason: str) -> None:
        """A site's reply was an error (kept in the record's ``failures``)."""
        self.record["failures"].append(Failure(site=site, task=task, round=rnd, reason=reason))
        self._write()

    def finish(self, status: RunStatus = "finished", reason: str | None = None) -> None:
        """The run ended (``aborted`` with ``reason``)."""
        self.record["status"] = status
        if reason:
            self.record["abort_reason"] = reason
            self.record["abort_round"] = self.record.get("current_round")
        self.record["ended"] = time.time()
        self._write()

    def _seen(self, sites: Mapping[str, object]) -> None:
        self.record["sites"] = sorted(set(self.record["sites"]) | set(sites))

    def _write(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(self.record_path, self.record)
        if self.cross:
            self.cross_path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.cross_path, self.cross)
