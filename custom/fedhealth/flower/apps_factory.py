"""Flower 1.42 ``ClientApp`` and ``ServerApp`` of any kit job (Message API), built from the job folder.

The ServerApp runs its own loop over the ``Grid`` rather than a ``flwr.serverapp.strategy``: the job's
round is the kit's, step for step, as FLARE's workflows run it. First, for a job that aligns EHR
features, a query round (``query.ehr_profile``: each site's small-cell-suppressed profile;
``query.set_schema``: the aligned schema back, :func:`fedhealth.flower.site.align_schema`). Then each
round sends the global weights and the round's number to every connected site (``train``), the
site trains with the learning rate ``lr * gamma ** round`` of the job's schedule, and the server
aggregates with the job's robust rule weighted by training rows
(:func:`fedhealth.flower.site.aggregate`). Last, every site validates the final global model on its
test split with the kit's metrics (``evaluate``). The ClientApp wraps
:class:`fedhealth.flower.site.FlowerSite` (the FLARE executor's own ``SiteRunner``).

Node config (a site's own setting; the app never names a hospital's path):

* ``site-name``: the site's name.
* ``site-root``: the site's folder; its ``local/fedhealth_site.json`` names ``data_root`` (as a FLARE
  site's workspace does).

Without them: the environment's ``FEDHEALTH_SITE_NAME`` and ``FEDHEALTH_SITE_ROOT``; under FLARE's
Flower integration (which gives a SuperNode only ``partition-id``) the FLARE site itself (the app
runs in ``<site root>/<job>/app_<site>``); in Flower's simulation engine the run config key
``sites-file``, a JSON list ``[{"name": ..., "root": ...}, ...]`` indexed by ``partition-id``
(:func:`fedhealth.flower.site.site_location`).

Run config (all optional; ``pyproject.toml`` of the FAB folders under ``fedhealth/flower/apps`` lists
them):

* ``job-dir``: the kit job folder to read (default: the kit's own ``jobs/<job>``).
* ``num-rounds``: rounds (0: the job's ``num_rounds``).
* ``min-sites``: sites to wait for before the first step (0: the job's ``min_clients``); every
  connected site takes part in every step.
* ``wait-s``: how long to wait for them (default 120).
* ``round-timeout``: seconds a step waits for replies (default 600).
* ``results``: the path of the results JSON (empty: none). It holds per step and round the wall
  clock start and end, per site the train seconds, the bytes sent and received, the final
  validation of the global model (accuracy, AUC, n and the kit's other metrics), and the averages
  over sites.
* ``sites-file``: see above.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

from fedhealth import constants as C
from fedhealth.flower.job import JobSettings, kit_job_folder, read_job
from fedhealth.flower.site import FlowerSite, aggregate, align_schema, initial_weights, site_location
from fedhealth.flower.wire import metric_record, pack, unpack

ARRAYS, CONFIG, METRICS, SITE, STATE = "arrays", "config", "metrics", "site", "fedhealth.site"
PROFILE = f"query.{C.TASK_EHR_PROFILE}"
SCHEMA = f"query.{C.TASK_SET_SCHEMA}"
log = logging.getLogger(__name__)
_SITES: dict[tuple[int, str, str], FlowerSite] = {}  # (run, site, job folder) -> loaded site, per process


# ---------------------------------------------------------------------------- conversions
def to_arrays(weights: dict[str, np.ndarray]) -> ArrayRecord:
    """Weights as an ``ArrayRecord`` (names, dtypes and shapes kept)."""
    return ArrayRecord(array_dict={k: Array(np.ascontiguousarray(v)) for k, v in weights.items()})


def from_arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    """The weights an ``ArrayRecord`` holds."""
    return {k: v.numpy() for k, v in record.items()}


def message_bytes(content: RecordDict) -> int:
    """Bytes of a message's content as Flower ships it (its deflated objects, without gRPC framing)."""
    return sum(len(obj.deflate()) for obj in get_all_nested_objects(content).values())


def job_of(run_config: dict[str, Any], default_job: str) -> tuple[Path, JobSettings]:
    """The job folder (``job-dir`` or the kit's own) and its settings."""
    folder = Path(str(run_config.get("job-dir") or "")) if run_config.get("job-dir") else None
    folder = folder or kit_job_folder(default_job)
    return folder, read_job(folder)


# ---------------------------------------------------------------------------- ClientApp
def _site(context: Context, default_job: str, overrides: dict) -> FlowerSite:
    run_config = {**context.run_config, **overrides}
    folder, job = job_of(run_config, default_job)
    name, root = site_location(context.node_config, run_config, cwd=Path.cwd(), environ=os.environ)
    key = (int(context.run_id), name, str(folder))
    site = _SITES.get(key)
    if site is None:
        site = _SITES[key] = FlowerSite(job, name, root)
    if STATE in context.state:
        saved = context.state[STATE]
        schema = saved.get("schema")
        site.restore({"generator": saved.get("generator"), "schema": json.loads(schema) if schema else None})
    return site


def _save(site: FlowerSite, context: Context) -> None:
    state = site.state()
    record = {"generator": state["generator"]}
    if state["schema"] is not None:
        record["schema"] = json.dumps(state["schema"])
    context.state[STATE] = ConfigRecord(record)


def _reply(
    msg: Message, site: FlowerSite, payload: dict, metrics: dict | None = None, arrays=None
) -> Message:
    content = RecordDict({SITE: ConfigRecord({"name": site.name}), CONFIG: ConfigRecord(pack(payload))})
    if metrics is not None:
        content[METRICS] = MetricRecord(metric_record(metrics))
    if arrays is not None:
        content[ARRAYS] = arrays
    return Message(content=content, reply_to=msg)


def client_app_for(default_job: str, overrides: dict | None = None) -> ClientApp:
    """The ClientApp of the kit job ``default_job`` (the run config's ``job-dir`` overrides it).

    Args:
        overrides: run config entries that win over the run's (Flower's ``run_simulation`` passes
            no run config: the peer runners give theirs here).
    """
    app = ClientApp()
    overrides = dict(overrides or {})

    @app.query(C.TASK_EHR_PROFILE)
    def profile(msg: Message, context: Context) -> Message:
        site = _site(context, default_job, overrides)
        asked = unpack(msg.content[CONFIG])
        return _reply(msg, site, site.profile(int(asked["min_cell"])))

    @app.query(C.TASK_SET_SCHEMA)
    def set_schema(msg: Message, context: Context) -> Message:
        site = _site(context, default_job, overrides)
        site.set_schema(unpack(msg.content[CONFIG]))
        _save(site, context)
        return _reply(msg, site, {"ok": True})

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        site = _site(context, default_job, overrides)
        asked = unpack(msg.content[CONFIG])
        result = site.train(
            from_arrays(msg.content[ARRAYS]),
            round_index=int(asked["round"]),
            num_rounds=int(asked["num_rounds"]),
        )
        _save(site, context)
        numbers = {"num-examples": result.n_train, "train-s": result.seconds, "steps": result.steps}
        return _reply(msg, site, result.metrics, numbers, to_arrays(result.weights))

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        site = _site(context, default_job, overrides)
        metrics = site.validate(from_arrays(msg.content[ARRAYS]))
        return _reply(msg, site, metrics, metrics)

    return app


# ---------------------------------------------------------------------------- ServerApp
class _Step:
    """One broadcast and its replies, with wall-clock stamps and bytes per site."""

    def __init__(self, grid: Grid, nodes: list[int], message_type: str, content: RecordDict, timeout: float):
        self.down = message_bytes(content)
        messages = [Message(content=content, dst_node_id=n, message_type=message_type) for n in nodes]
        self.started = time.time()
        replies = list(grid.send_and_receive(messages, timeout=timeout))
        self.ended = time.time()
        self.replies: dict[str, RecordDict] = {}
        self.errors: list[str] = []
        for reply in replies:
            if reply.has_error():
                self.errors.append(f"node {reply.metadata.src_node_id}: {reply.error.reason}")
            else:
                self.replies[str(reply.content[SITE]["name"])] = reply.content
        missing = len(nodes) - len(replies)
        if missing:
            self.errors.append(
                f"{missing} of {len(nodes)} site(s) did not answer {message_type} in {timeout} s"
            )
        if self.errors:
            raise RuntimeError(f"{message_type}: " + "; ".join(self.errors))

    def record(self, name: str) -> dict:
        return {
            "step": name,
            "started": self.started,
            "ended": self.ended,
            "seconds": self.ended - self.started,
            "bytes_down_per_site": self.down,
            "bytes_up": {site: message_bytes(content) for site, content in self.replies.items()},
        }


def _wait_for_nodes(grid: Grid, count: int, wait_s: float) -> list[int]:
    deadline = time.time() + wait_s
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= count:
            return nodes
        if time.time() > deadline:
            raise RuntimeError(f"only {len(nodes)} of {count} site(s) connected within {wait_s} s.")
        time.sleep(0.2)


def _config(data: dict) -> ConfigRecord:
    return ConfigRecord(pack(data))


def run_server(grid: Grid, run_config: dict[str, Any], default_job: str) -> dict:
    """The job's federation over ``grid``; returns (and writes to ``results``) the results dict.

    The dict is shaped like the kit's run record where they overlap (``started``, ``round_times``
    with ``started``/``done``, ``rounds`` with each site's metrics and ``task_s``), so
    :func:`fedhealth.reports.timing.timing_summary` reads it as it reads a FLARE run.
    """
    folder, job = job_of(run_config, default_job)
    rounds = int(run_config.get("num-rounds", 0) or 0) or job.rounds
    timeout = float(run_config.get("round-timeout", 600) or 600)
    started = time.time()
    nodes = _wait_for_nodes(
        grid,
        int(run_config.get("min-sites", 0) or 0) or job.min_clients,
        float(run_config.get("wait-s", 120) or 120),
    )
    out: dict[str, Any] = {
        "job": job.name,
        "job_dir": str(folder),
        "num_rounds": rounds,
        "sites": len(nodes),
        "started": started,
        "settings": {
            "lr": job.lr,
            "gamma": job.gamma,
            "mu": job.mu,
            "seed": job.seed,
            **job.local,
            "aggregation": job.aggregation,
            "model": job.model[0],
        },
        "steps": [],
        "round_times": [],
        "rounds": [],
    }
    schema = None
    if job.alignment is not None:
        step = _Step(
            grid, nodes, PROFILE, RecordDict({CONFIG: _config({"min_cell": job.alignment.min_cell})}), timeout
        )
        out["steps"].append(step.record(PROFILE))
        schema, for_sites = align_schema(job, {s: unpack(c[CONFIG]) for s, c in step.replies.items()})
        step = _Step(grid, nodes, SCHEMA, RecordDict({CONFIG: _config(for_sites)}), timeout)
        out["steps"].append(step.record(SCHEMA))
        out["n_features"] = len(schema["columns"])
    weights = initial_weights(job, schema)
    for r in range(rounds):
        content = RecordDict(
            {ARRAYS: to_arrays(weights), CONFIG: _config({"round": r, "num_rounds": rounds})}
        )
        step = _Step(grid, nodes, "train", content, timeout)
        results = {
            s: (from_arrays(c[ARRAYS]), float(c[METRICS]["num-examples"])) for s, c in step.replies.items()
        }
        weights, rejected = aggregate(weights, results, job.aggregation)
        log.info("%s round %d: %d sites, %.3f s", job.name, r, len(results), step.ended - step.started)
        out["round_times"].append({"round": r, "started": step.started, "done": step.ended})
        out["rounds"].append(
            {
                "round": r,
                "sites": {s: unpack(c[CONFIG]) for s, c in sorted(step.replies.items())},
                "bytes_down_per_site": step.down,
                "bytes_up": step.record("train")["bytes_up"],
                "rejected": rejected,
            }
        )
    step = _Step(grid, nodes, "evaluate", RecordDict({ARRAYS: to_arrays(weights)}), timeout)
    out["steps"].append(step.record("evaluate"))
    final = {s: unpack(c[CONFIG]) for s, c in sorted(step.replies.items())}
    out["final"] = final
    for key in (C.M_ACCURACY, C.M_AUC):
        values = [m[key] for m in final.values() if m.get(key) is not None]
        out[f"client_avg_{key}"] = float(np.mean(values)) if values else None
    out["ended"] = time.time()
    path = str(run_config.get("results", "") or "")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(out, indent=1))
    return out


def server_app_for(default_job: str, overrides: dict | None = None) -> ServerApp:
    """The ServerApp of the kit job ``default_job``; ``overrides`` as in :func:`client_app_for`."""
    app = ServerApp()
    overrides = dict(overrides or {})

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_server(grid, {**context.run_config, **overrides}, default_job)

    return app
