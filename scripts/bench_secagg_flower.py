"""Flower's own SecAgg+ (flwr 1.42), one aggregation round in one process: the reference for ours.

What runs is Flower's code end to end: the server side is ``flwr.server.workflow.SecAggPlusWorkflow``
called on a ``LegacyContext`` (its four stages: setup, share keys, collect masked vectors, unmask),
the client side a ``flwr.clientapp.ClientApp`` wrapped in ``flwr.client.mod.secaggplus_mod`` whose
inner ``NumPyClient.fit`` returns the site's float32 vector and its ``num_examples``. SecAgg+ is
Bell et al., "Secure Single-Server Aggregation with (Poly)Logarithmic Overhead", CCS 2020.

No Ray, no network, no SuperLink: ``DirectGrid`` (below) is a ``flwr.serverapp.grid.Grid`` whose
``send_and_receive`` carries each message the way Flower's transport does, as the deflated
inflatable objects of the message (``get_all_nested_objects`` + ``deflate``, then
``inflate_object_from_contents`` on the other side), and calls the destination's ``ClientApp``.

Measured per round:

* ``round_s``: ``time.perf_counter`` around ``SecAggPlusWorkflow.__call__`` (all stages, every
  client's mod and fit, the server's unmasking), less the time spent deflating and inflating the
  messages (reported apart as ``transport_s``). Clients run one after the other on one thread, so
  this is the sum of all sites' work plus the server's, not the wall time of a parallel deployment,
  and it has no timeout wait for the dropped site.
* ``bytes_per_site``: the mean over the ``n`` sampled sites of the bytes each receives and sends in
  the round's protocol messages, counted as the sum of the deflated sizes of every inflatable object
  of each message (Message, RecordDict, records, arrays and chunks: what Flower pushes to and pulls
  from its object store), without gRPC framing. The stage 2 instruction carries Flower's ``FitIns``
  with the global model (``d`` float32 zeros here); ``bytes_per_site_excl_model`` leaves that
  ArrayRecord out.
* ``client_s`` / ``server_s``: the part of ``round_s`` inside the ClientApp calls / the rest.
* ``max_rel_error``: ``max|flower_mean - exact_mean| / max|exact_mean|``, exact_mean the float64
  mean of the surviving sites' vectors weighted by ``num_examples`` (Flower weights by
  ``num_examples / max_weight``, quantized).

A dropout is a site that takes part in setup and key sharing, receives the stage 2 message and
never replies (no masked vector); the server then rebuilds its pairwise masks from its ``sk1``
shares in the unmask stage. The dropped site is the first (the fewest ``num_examples``).

``num_shares`` is Flower's neighbourhood size (a site and its ``neighbors = num_shares - 1`` mask
partners), ``threshold`` its ``reconstruction_threshold``; by default all sites below 8 (threshold
``n - 1``), else the values of Flower's secure-aggregation example (3 and 2).

Usage: ``.venv-flower/bin/python scripts/bench_secagg_flower.py [--quick] [--out FILE]``.
"""

# ruff: noqa: E402  (the thread caps must be set before numpy is imported)
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import json
import logging
import platform
import statistics
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import flwr
import flwr.compat.common.recorddict_compat as compat
import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.server.client_manager import SimpleClientManager
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.server_config import ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.serverapp.grid import Grid
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

PARAMS = (15, 100_000, 1_000_000)
SITES = (4, 16)
DROPOUTS = (0, 1)
FIRST_NODE_ID = 1001  # Flower's SuperLink is node 1
CLIP_DATA = 1.0  # the sites' vectors: N(0, 0.01^2) per coordinate, clipped to +-1


def _transfer(msg: Message) -> tuple[Message, int, float]:
    """Flower's wire form of ``msg`` and back: (the received copy, bytes, seconds spent)."""
    start = time.perf_counter()
    msg.metadata.__dict__["_message_id"] = msg.object_id  # as HttpGrid.push_messages does
    objects = get_all_nested_objects(msg)
    contents = {object_id: obj.deflate() for object_id, obj in objects.items()}
    size = sum(len(content) for content in contents.values())
    received = inflate_object_from_contents(msg.object_id, contents)
    received.metadata.__dict__["_message_id"] = msg.metadata.message_id
    return received, size, time.perf_counter() - start


def _size(record: object) -> int:
    return sum(len(obj.deflate()) for obj in get_all_nested_objects(record).values())


class DirectGrid(Grid):
    """An in-process Grid: each message goes through Flower's deflate/inflate to a ClientApp call."""

    def __init__(self, *, apps: dict[int, tuple[ClientApp, Context]], drop: set[int]) -> None:
        self._run = Run.create_empty(run_id=1)
        self.apps, self.drop = apps, drop
        self.bytes: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.model_bytes: dict[int, int] = defaultdict(int)
        self.transport_s = 0.0
        self.client_s = 0.0

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.apps)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError("DirectGrid only answers send_and_receive.")

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError("DirectGrid only answers send_and_receive.")

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        replies = []
        for msg in messages:
            node, stage = (
                msg.metadata.dst_node_id,
                str(msg.content.config_records[RECORD_KEY_CONFIGS][Key.STAGE]),
            )
            if stage == Stage.COLLECT_MASKED_VECTORS:
                start = time.perf_counter()
                self.model_bytes[node] += sum(_size(r) for r in msg.content.array_records.values())
                self.transport_s += time.perf_counter() - start
            received, size, seconds = _transfer(msg)
            self.bytes[node][f"{stage}_down"] += size
            self.transport_s += seconds
            if stage == Stage.COLLECT_MASKED_VECTORS and node in self.drop:
                continue  # the site drops out: no masked vector comes back
            app, context = self.apps[node]
            start = time.perf_counter()
            reply = app(received, context)
            self.client_s += time.perf_counter() - start
            back, size, seconds = _transfer(reply)
            self.bytes[node][f"{stage}_up"] += size
            self.transport_s += seconds
            replies.append(back)
        return replies


class _Site(NumPyClient):
    def __init__(self, vector: np.ndarray, num_examples: int) -> None:
        self.vector, self.num_examples = vector, num_examples

    def fit(self, parameters: list, config: dict) -> tuple[list[np.ndarray], int, dict]:
        return [self.vector], self.num_examples, {}


class _KeepAggregate(FedAvg):
    """FedAvg whose aggregate_fit keeps the workflow's already averaged vector (no second average)."""

    result: np.ndarray | None = None

    def aggregate_fit(self, server_round: int, results: list, failures: list) -> tuple:
        self.result = parameters_to_ndarrays(results[0][1].parameters)[0]
        return results[0][1].parameters, {}


def default_shares(sites: int) -> tuple[int, int]:
    """(num_shares, reconstruction_threshold): all sites below 8, else Flower's example's (3, 2)."""
    return (sites, sites - 1) if sites < 8 else (3, 2)


def one_round(
    *, params: int, sites: int, dropouts: int, shares: tuple[int, int], clipping_range: float, seed: int
) -> dict:
    """One SecAgg+ round of Flower's workflow over ``sites`` float32 vectors of ``params`` values."""
    if not 0 <= dropouts < sites - 1:
        raise ValueError(f"dropouts must be in [0, {sites - 2}] for {sites} sites, got {dropouts}.")
    rng = np.random.default_rng(seed)
    np.random.seed(seed)  # Flower's stochastic rounding draws from numpy's global generator
    vectors = [
        np.clip(rng.normal(0, 0.01, params), -CLIP_DATA, CLIP_DATA).astype(np.float32) for _ in range(sites)
    ]
    examples = [100 * (i + 1) for i in range(sites)]
    max_weight = float(max(examples))
    nodes = [FIRST_NODE_ID + i for i in range(sites)]
    drop = set(nodes[:dropouts])

    def app_for(i: int) -> ClientApp:
        return ClientApp(
            client_fn=lambda context: _Site(vectors[i], examples[i]).to_client(), mods=[secaggplus_mod]
        )

    apps = {
        node: (app_for(i), Context(run_id=1, node_id=node, node_config={}, state=RecordDict(), run_config={}))
        for i, node in enumerate(nodes)
    }
    grid = DirectGrid(apps=apps, drop=drop)
    num_shares, threshold = shares
    workflow = SecAggPlusWorkflow(
        num_shares=num_shares,
        reconstruction_threshold=threshold,
        max_weight=max_weight,
        clipping_range=clipping_range,
    )
    strategy = _KeepAggregate(
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=sites, min_available_clients=sites
    )
    manager = SimpleClientManager()
    for node in nodes:
        manager.register(GridClientProxy(node_id=node, grid=grid, run_id=1))
    base = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    context = LegacyContext(
        base, config=ServerConfig(num_rounds=1), strategy=strategy, client_manager=manager
    )
    context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({"current_round": 1})
    global_model = ndarrays_to_parameters([np.zeros(params, dtype=np.float32)])
    context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(global_model, True)

    start = time.perf_counter()
    workflow(grid, context)
    elapsed = time.perf_counter() - start
    if strategy.result is None:
        raise RuntimeError(
            f"Flower's SecAgg+ halted for {params} params, {sites} sites, {dropouts} dropouts."
        )

    alive = [i for i, node in enumerate(nodes) if node not in drop]
    w = np.array([examples[i] for i in alive], dtype=np.float64)
    exact = np.stack([vectors[i].astype(np.float64) for i in alive]).T @ w / w.sum()
    totals = [sum(grid.bytes[node].values()) for node in nodes]
    by_stage: dict[str, float] = defaultdict(float)
    for node in nodes:
        for key, size in grid.bytes[node].items():
            by_stage[key] += size / sites
    round_s = elapsed - grid.transport_s
    return {
        "round_s": round_s,
        "client_s": grid.client_s,
        "server_s": round_s - grid.client_s,
        "transport_s": grid.transport_s,
        "bytes_per_site": statistics.fmean(totals),
        "bytes_per_site_max": max(totals),
        "bytes_per_site_excl_model": statistics.fmean(totals)
        - statistics.fmean(grid.model_bytes[n] for n in nodes),
        "bytes_per_site_by_stage": {k: round(v, 1) for k, v in sorted(by_stage.items())},
        "max_rel_error": float(np.max(np.abs(strategy.result - exact)) / np.max(np.abs(exact))),
    }


def bench(
    *, params: int, sites: int, dropouts: int, repeats: int, shares: tuple[int, int], clipping_range: float
) -> dict:
    """The row of one configuration: the median round over ``repeats`` rounds, the rest from the first."""
    runs = [
        one_round(
            params=params,
            sites=sites,
            dropouts=dropouts,
            shares=shares,
            clipping_range=clipping_range,
            seed=seed,
        )
        for seed in range(repeats)
    ]
    workflow = SecAggPlusWorkflow(
        num_shares=shares[0], reconstruction_threshold=shares[1], clipping_range=clipping_range
    )
    first = runs[0]
    return {
        "mode": "flower_secaggplus",
        "params": params,
        "sites": sites,
        "dropouts": dropouts,
        "round_s": statistics.median(r["round_s"] for r in runs),
        "round_s_all": [round(r["round_s"], 4) for r in runs],
        "client_s": statistics.median(r["client_s"] for r in runs),
        "server_s": statistics.median(r["server_s"] for r in runs),
        "transport_s": statistics.median(r["transport_s"] for r in runs),
        "repeats": repeats,
        "bytes_per_site": first["bytes_per_site"],
        "bytes_per_site_max": first["bytes_per_site_max"],
        "bytes_per_site_excl_model": first["bytes_per_site_excl_model"],
        "bytes_per_site_by_stage": first["bytes_per_site_by_stage"],
        "max_rel_error": max(r["max_rel_error"] for r in runs),
        "weighted": True,
        "num_examples": [100 * (i + 1) for i in range(sites)],
        "max_weight": float(100 * sites),
        "num_shares": shares[0],
        "threshold": shares[1],
        "neighbors": shares[0] - 1,
        "clipping_range": workflow.clipping_range,
        "quantization_range": workflow.quantization_range,
        "modulus_range": workflow.modulus_range,
    }


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, nargs="+", default=list(PARAMS))
    parser.add_argument("--sites", type=int, nargs="+", default=list(SITES))
    parser.add_argument("--dropouts", type=int, nargs="+", default=list(DROPOUTS))
    parser.add_argument("--repeats", type=int, default=3, help="rounds per configuration (1M x 16: 1)")
    parser.add_argument(
        "--num-shares", type=int, help="default: all sites below 8, else 3 (Flower's example)"
    )
    parser.add_argument("--threshold", type=int, help="default: num_shares - 1 below 8 sites, else 2")
    parser.add_argument("--clipping-range", type=float, default=CLIP_DATA)
    parser.add_argument("--quick", action="store_true", help="params 15 and 100000, 4 sites only")
    parser.add_argument("--out", type=Path, help="write {rows, flwr_version, python, cpu} here")
    args = parser.parse_args()
    # Who this process is, which Flower's Message constructor reads (a ServerApp process gets it from
    # the SuperLink): run 1, the SuperLink's node id, task 0.
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, SUPERLINK_NODE_ID, 0
    logging.getLogger("flwr").setLevel(logging.ERROR)
    if args.quick:
        args.params, args.sites = [15, 100_000], [4]

    rows = []
    for sites in args.sites:
        default = default_shares(sites)
        shares = (args.num_shares or default[0], args.threshold or default[1])
        # one untimed round first: Flower's first round pays one-off costs (lazy imports, caches)
        one_round(
            params=15, sites=sites, dropouts=0, shares=shares, clipping_range=args.clipping_range, seed=99
        )
        for params in args.params:
            for dropouts in args.dropouts:
                repeats = 1 if params >= 1_000_000 and sites >= 16 else args.repeats
                row = bench(
                    params=params,
                    sites=sites,
                    dropouts=dropouts,
                    repeats=repeats,
                    shares=shares,
                    clipping_range=args.clipping_range,
                )
                print(json.dumps(row), flush=True)
                rows.append(row)
    if args.out:
        report = {
            "rows": rows,
            "flwr_version": flwr.__version__,
            "python": platform.python_version(),
            "cpu": _cpu(),
            "threads": os.environ["OMP_NUM_THREADS"],
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
