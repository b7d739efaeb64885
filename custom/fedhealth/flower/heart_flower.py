"""A research group's heart FedProx Flower app (``flwr`` 1.42 Message API): ``client_app``, ``server_app``.

Self-contained, as a group's existing Flower code is (its settings in its run config, not in a kit
job folder; :mod:`fedhealth.flower.heart` is the kit's own job as a Flower app instead). Run under
FLARE (job ``heart_flower``) or any Flower deployment. The ClientApp is one hospital: it
reads the site's own rows (its folder from the ``FEDHEALTH_SITE_ROOT`` environment variable, which
the kit's FLARE executor sets; the data location is the site's setting,
:func:`fedhealth.data.site_data.resolve_data_root`), trains FedProx with the kit's loop, and
returns the kit's round metrics and, at the end, its validation of the global model with bootstrap
intervals, small cells withheld (:mod:`fedhealth.privacy.released_metrics`). The ServerApp
averages the sites' models weighted by training rows and writes the kit's run files
(:class:`fedhealth.flower.run_files.FlowerRunLog`), so ``fedhealth report`` reads a Flower run.

Scaling is FLamby's per-site scaling (each site its own training mean and SD). Settings come from
the app's run config (``[tool.flwr.app.config]``, overridden by the FLARE job's ``run_config``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from fedhealth.constants import FLOWER_SITE_ROOT_ENV, M_EVAL_SPLIT, M_INTERVALS, M_N_TEST, M_N_TRAIN
from fedhealth.data.features import feature_names
from fedhealth.data.site_data import load_site, resolve_data_root, site_settings
from fedhealth.flower.run_files import FlowerRunLog
from fedhealth.models.tabular import TabularNet
from fedhealth.policy.site_limits import TrainRequest, check_train, planned_steps, site_limits
from fedhealth.privacy.released_metrics import release_round, release_validation
from fedhealth.privacy.small_cells import class_counts, site_min_cell
from fedhealth.training.heart_site import HeartSite
from fedhealth.training.loops import LocalTrainConfig, predict
from fedhealth.training.site_metrics import evaluate_with_intervals

REPLY = "fedhealth"  # the ConfigRecord of a reply: {"site": name, "metrics": JSON}
WEIGHT = "num-examples"  # the MetricRecord key the ServerApp weights by

client_app = ClientApp()
server_app = ServerApp()


def _model(config: dict) -> TabularNet:
    return TabularNet(
        in_features=len(feature_names(True)), arch=str(config["arch"]), seed=int(config["seed"])
    )


def _root() -> Path:
    root = os.environ.get(FLOWER_SITE_ROOT_ENV)
    if not root:
        raise RuntimeError(
            f"{FLOWER_SITE_ROOT_ENV} is not set: the heart Flower app runs under the kit's "
            "FLARE executor (fedhealth.executors.flower_site_executor.FlowerSiteExecutor)."
        )
    return Path(root)


def _site(context: Context) -> tuple[str, HeartSite, int]:
    """This site's name, data and minimum cell, from the folder the FLARE executor names."""
    root = _root()
    name = str(context.node_config.get("client-name", "site"))
    train, test = load_site(resolve_data_root(Path(root)))
    return name, HeartSite(name, train, test, scaling="site"), site_min_cell(site_settings(Path(root)))


def _reply(msg: Message, name: str, metrics: dict, arrays: ArrayRecord | None, weight: int) -> Message:
    content = RecordDict(
        {
            REPLY: ConfigRecord({"site": name, "metrics": json.dumps(metrics)}),
            "metrics": MetricRecord({WEIGHT: weight}),
        }
    )
    if arrays is not None:
        content["arrays"] = arrays
    return Message(content=content, reply_to=msg)


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    """One FedProx round on the site's training rows; the round metrics score the received model on test."""
    config = context.run_config
    rnd = int(msg.content["config"]["round"])
    name, site, min_cell = _site(context)
    model = _model(config)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    received = site.evaluate(model)
    local = LocalTrainConfig(
        lr=float(config["lr"]),
        batch_size=int(config["batch-size"]),
        local_steps=int(config["local-steps"]),
        local_epochs=int(config["local-epochs"]),
        mu=float(config["mu"]),
    )
    # The site's own floor (fedhealth.policy.site_limits), as in the kit's FLARE jobs; the Flower app
    # trains without DP-SGD, so a site that requires DP declines here.
    steps = planned_steps(
        site.n_train,
        batch_size=local.batch_size,
        local_steps=local.local_steps,
        local_epochs=local.local_epochs,
    )
    request = TrainRequest(
        batch_size=local.batch_size, steps=steps, n_train=site.n_train, learning_rate=local.lr
    )
    declined = check_train(request, site_limits(_root()).for_scope(None))
    if declined:
        raise RuntimeError(f"site {name}: " + "; ".join(declined))
    stats = site.train_round(model, local, generator=torch.Generator().manual_seed(int(config["seed"]) + rnd))
    metrics = {
        "round": rnd,
        "train_loss": stats["train_loss"],
        "steps": stats["steps"],
        M_N_TRAIN: float(site.n_train),
        M_N_TEST: float(site.n_test),
        "global_loss": received["loss"],
        "global_accuracy": received["accuracy"],
        "global_auc": received["auc"],
        M_EVAL_SPLIT: "test",
    }
    _, labels = site.arrays("test")
    released = release_round(
        metrics, pairs=class_counts(labels), n_split=site.n_test, n_train=site.n_train, min_cell=min_cell
    )
    return _reply(msg, name, released, ArrayRecord(model.state_dict()), site.n_train)


@client_app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """The site's validation of the global model on its test rows, with 95% bootstrap intervals."""
    config = context.run_config
    name, site, min_cell = _site(context)
    model = _model(config)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    x, labels = site.arrays("test")
    metrics = {
        **site.evaluate(model),
        M_INTERVALS: evaluate_with_intervals(
            labels, predict(model, x), n_bootstrap=int(config["n-bootstrap"])
        ),
    }
    released = release_validation(metrics, pairs=class_counts(labels), n=len(labels), min_cell=min_cell)
    return _reply(msg, name, released, None, site.n_test)


def _nodes(grid: Grid, wanted: int, wait: float) -> list[int]:
    deadline = time.monotonic() + wait
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= wanted or time.monotonic() > deadline:
            if len(nodes) < wanted:
                raise RuntimeError(f"only {len(nodes)} of {wanted} sites connected within {wait:.0f} s")
            return nodes
        time.sleep(0.5)


def _ask(grid: Grid, nodes: list[int], kind: str, content: RecordDict, timeout: float) -> list[Message]:
    messages = [Message(content=content, message_type=kind, dst_node_id=node) for node in nodes]
    return list(grid.send_and_receive(messages, timeout=timeout))


def _site_of(reply: Message) -> tuple[str, dict]:
    record = reply.content[REPLY]
    return str(record["site"]), json.loads(str(record["metrics"]))


def _average(replies: list[Message]) -> dict[str, torch.Tensor]:
    """FedAvg's weighted mean of the sites' models (weights: training rows)."""
    weights = np.array([float(r.content["metrics"][WEIGHT]) for r in replies])
    states = [r.content["arrays"].to_torch_state_dict() for r in replies]
    share = weights / weights.sum()
    return {key: sum(float(w) * s[key] for w, s in zip(share, states, strict=True)) for key in states[0]}


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    """FedProx rounds over every connected site, then each site validates the final model."""
    config = context.run_config
    rounds = int(config["num-server-rounds"])
    timeout = float(config["round-timeout"])
    log = FlowerRunLog(
        Path.cwd(),
        job_id=Path.cwd().name,
        gate={
            "primary_metric": str(config["gate-metric"]),
            "threshold": float(config["gate-threshold"]),
            "flag_sd": float(config["gate-flag-sd"]),
        },
        num_rounds=rounds,
    )
    try:
        nodes = _nodes(grid, int(config["min-nodes"]), float(config["node-wait-seconds"]))
        model = _model(config)
        for rnd in range(rounds):
            log.start_round(rnd)
            content = RecordDict(
                {"arrays": ArrayRecord(model.state_dict()), "config": ConfigRecord({"round": rnd})}
            )
            replies = _ask(grid, nodes, "train", content, timeout)
            good = [r for r in replies if not r.has_error()]
            for bad in (r for r in replies if r.has_error()):
                log.failed(f"node {bad.metadata.src_node_id}", "train", rnd, str(bad.error.reason))
            if not good:
                raise RuntimeError(f"round {rnd}: no site returned a model")
            log.end_round(rnd, dict(_site_of(r) for r in good))
            model.load_state_dict(_average(good))
        replies = _ask(
            grid, nodes, "evaluate", RecordDict({"arrays": ArrayRecord(model.state_dict())}), timeout
        )
        log.validation(dict(_site_of(r) for r in replies if not r.has_error()))
        log.finish()
    except Exception as exc:
        log.finish("aborted", f"{type(exc).__name__}: {exc}")
        raise
