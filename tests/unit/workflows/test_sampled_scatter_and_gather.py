"""SampledScatterAndGather with FLARE's own Task, FLContext and components: who gets the train task.

The engine and the communicator are stand-ins (FLARE's server engine needs a running federation);
the controller, its ScatterAndGather base, the aggregator and the shareable generator are real.
"""

from __future__ import annotations

import pytest
from nvflare.apis.client import Client
from nvflare.apis.controller_spec import Task
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import FLContextKey, ReservedKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.app_common.shareablegenerators.full_model_shareable_generator import FullModelShareableGenerator

from fedhealth import constants as C
from fedhealth.aggregators.dp_fedavg_aggregator import DPFedAvgAggregator
from fedhealth.aggregators.robust_aggregator import RobustAggregator
from fedhealth.algorithms.sampling import SiteSampler
from fedhealth.workflows.sampled_scatter_and_gather import SampledScatterAndGather

SITES = ["cleveland", "hungary", "switzerland", "va_long_beach"]
SEED = 5
# (args, fragment of the refusal)
BAD = [
    ({"clients_per_round": 3, "min_clients": 4}, "min_clients 4 is more than the 3 sites sampled a round"),
    (
        {"clients_per_round": 0.5, "min_clients": 3, "num_sites": 4},
        "min_clients 3 is more than the 2 sites sampled a round",
    ),
    ({"clients_per_round": 5, "min_clients": 1, "num_sites": 4}, "between 1 and the job's 4 sites"),
    ({"clients_per_round": 0, "min_clients": 1}, "at least 1 site"),
    ({"clients_per_round": 3, "min_clients": 3, "sampling": "random"}, "sampling must be one of"),
    ({"clients_per_round": 3, "min_clients": 3, "sampling_seed": "x"}, "sampling_seed must be"),
]


class Engine:
    """FLARE's server engine as the controller sees it: clients, components, events."""

    def __init__(self, sites: list[str], components: dict | None = None) -> None:
        self.clients = [Client(name, f"token-{name}") for name in sites]
        self.components = components or {}
        self.events: list[tuple[str, object]] = []

    def get_clients(self) -> list[Client]:
        return list(self.clients)

    def get_component(self, component_id: str) -> object:
        return self.components.get(component_id)

    def fire_event(self, event_type: str, fl_ctx: FLContext) -> None:
        data = fl_ctx.get_prop(C.PROP_SITES_SAMPLED)
        if event_type == EventType.FATAL_SYSTEM_ERROR:
            data = fl_ctx.get_prop(FLContextKey.EVENT_DATA)
        self.events.append((event_type, data))


class Communicator:
    """Records what the controller asks FLARE to broadcast."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def broadcast_and_wait(
        self, task, fl_ctx, targets, min_responses, wait_time_after_min_received, abort_signal
    ):
        self.calls.append({"task": task.name, "targets": targets, "min_responses": min_responses})


def _controller(engine: Engine, round_: int = 0, **kwargs: object) -> SampledScatterAndGather:
    args = {"clients_per_round": 3, "min_clients": 3, "num_sites": 4, "sampling_seed": SEED, **kwargs}
    controller = SampledScatterAndGather(**args)
    controller._engine = engine
    controller.communicator = Communicator()
    controller._current_round = round_
    return controller


def _ctx(engine: Engine) -> FLContext:
    fl_ctx = FLContext()
    fl_ctx.set_prop(ReservedKey.ENGINE, engine, private=True, sticky=True)
    return fl_ctx


def _train(controller: SampledScatterAndGather, fl_ctx: FLContext) -> None:
    task = Task(name=C.TASK_TRAIN, data=Shareable())
    controller._current_num_targets = len(controller._engine.get_clients())  # as ScatterAndGather sets it
    controller.broadcast_and_wait(task=task, fl_ctx=fl_ctx, min_responses=3, wait_time_after_min_received=0)


@pytest.mark.parametrize(("args", "fragment"), BAD, ids=[f for _, f in BAD])
def test_bad_config_is_refused_when_the_job_loads(args: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        SampledScatterAndGather(**args)


@pytest.mark.parametrize("round_", [0, 1, 2, 9])
def test_the_train_task_goes_to_the_seeded_sample_only(round_: int) -> None:
    engine = Engine(SITES)
    controller = _controller(engine, round_)
    _train(controller, _ctx(engine))
    expected = SiteSampler(clients_per_round=3, num_sites=4, seed=SEED).sample(SITES, round_).sampled
    (call,) = controller.communicator.calls
    assert call == {"task": C.TASK_TRAIN, "targets": list(expected), "min_responses": 3}
    assert controller._current_num_targets == 3  # FLARE's result-error tolerance counts the sample
    ((event, draw),) = engine.events
    assert event == C.EVENT_SITES_SAMPLED
    assert draw == {
        "round": round_,
        "sampled": list(expected),
        "connected": SITES,
        "rate": 0.75,
        "short": False,
        "k": 3,
        "n": 4,
        "planned_rate": 0.75,
        "mode": "fixed",
        "seeded": True,
        "min_responses": 3,
    }


def test_with_fewer_sites_connected_the_round_takes_those_present_and_waits_for_them() -> None:
    engine = Engine(SITES[:2])
    controller = _controller(engine, 4)
    _train(controller, _ctx(engine))
    assert controller.communicator.calls[0]["targets"] == SITES[:2]
    assert controller.communicator.calls[0]["min_responses"] == 2  # FLARE refuses more than the targets
    (_, draw) = engine.events[0]
    assert draw["short"] is True and draw["rate"] == 1.0 and draw["min_responses"] == 2


def test_other_tasks_and_explicit_targets_are_not_sampled() -> None:
    engine = Engine(SITES)
    controller = _controller(engine)
    fl_ctx = _ctx(engine)
    controller.broadcast_and_wait(task=Task(name=C.TASK_VALIDATE, data=Shareable()), fl_ctx=fl_ctx)
    controller.broadcast_and_wait(
        task=Task(name=C.TASK_TRAIN, data=Shareable()), fl_ctx=fl_ctx, targets=SITES
    )
    assert [c["targets"] for c in controller.communicator.calls] == [None, SITES]
    assert engine.events == []


def test_a_poisson_round_that_draws_nobody_sends_no_task() -> None:
    sampler = SiteSampler(clients_per_round=1, num_sites=4, mode="poisson", seed=SEED)
    empty = next(r for r in range(100) if not sampler.sample(SITES, r).sampled)
    engine = Engine(SITES)
    controller = _controller(engine, empty, clients_per_round=1, min_clients=1, sampling="poisson")
    _train(controller, _ctx(engine))
    assert controller.communicator.calls == []  # an empty target list would mean "any site" to FLARE
    assert engine.events[0][1]["sampled"] == [] and engine.events[0][1]["rate"] == 0.25


def _start(aggregator: object, **kwargs: object) -> tuple[SampledScatterAndGather, Engine]:
    components = {"aggregator": aggregator, "shareable_generator": FullModelShareableGenerator()}
    engine = Engine(SITES, components)
    controller = _controller(engine, **kwargs)
    controller.start_controller(_ctx(engine))
    return controller, engine


def test_a_dp_aggregator_with_another_sample_rate_stops_the_run_naming_both_rates() -> None:
    dp = DPFedAvgAggregator(clip_norm=1.0, expected_sites=4, total_sites=4, noise_multiplier=1.0)
    _, engine = _start(dp)
    ((event, reason),) = engine.events
    assert event == EventType.FATAL_SYSTEM_ERROR
    assert "accounts client-level DP with sample rate 1.0000 (expected_sites 4)" in reason
    assert "samples 3 of 4 sites a round (q = 0.7500)" in reason
    assert "Set the aggregator's expected_sites to 3 and total_sites to 4" in reason


@pytest.mark.parametrize(
    "aggregator",
    [
        DPFedAvgAggregator(clip_norm=1.0, expected_sites=3, total_sites=4, noise_multiplier=1.0),
        RobustAggregator(),
    ],
    ids=["dp-at-the-same-rate", "no-dp"],
)
def test_an_aggregator_at_the_same_rate_or_without_dp_starts(aggregator: object) -> None:
    controller, engine = _start(aggregator)
    assert engine.events == [] and controller.sampler.rate == 0.75


def test_without_num_sites_n_is_the_sites_connected_at_start() -> None:
    dp = DPFedAvgAggregator(clip_norm=1.0, expected_sites=2, total_sites=4, noise_multiplier=1.0)
    controller, engine = _start(dp, clients_per_round=0.5, min_clients=2, num_sites=None)
    assert engine.events == [] and (controller.sampler.k, controller.sampler.n) == (2, 4)


def test_without_num_sites_a_fraction_below_min_clients_stops_the_run_at_start() -> None:
    _, engine = _start(RobustAggregator(), clients_per_round=0.25, min_clients=2, num_sites=None)
    ((event, reason),) = engine.events
    assert event == EventType.FATAL_SYSTEM_ERROR
    assert reason.startswith(
        "SampledScatterAndGather: min_clients 2 is more than the 1 sites sampled a round"
    )
