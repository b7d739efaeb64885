"""The SecAgg+ train filter and protocol executor at a site, with the server's core, without a federation.

Four sites share a job id per test; each has its :class:`SecAggSite` registered as the executor
does on START_RUN. The filter opens the relayed shares on the data chain and sends only the masked
vector on the result chain; the server's core sums and unmasks to the FedAvg mean of the updates.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.filter import FilterChainType, FilterContextKey
from nvflare.apis.fl_constant import ReservedKey, ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable, make_reply
from nvflare.apis.signal import Signal

from fedhealth import constants as C
from fedhealth.executors import secagg_executor
from fedhealth.executors.secagg_executor import SecAggExecutor
from fedhealth.filters.secagg_mask import SecAggMask
from fedhealth.secagg.config import SecAggConfig
from fedhealth.secagg.server import SecAggServer
from fedhealth.secagg.site import SecAggSite
from fedhealth_tools.secagg.pki import make_pki

SITES = ("cleveland", "hungary", "switzerland", "va_long_beach")
CONFIG = SecAggConfig(max_norm=1.0, bits=32, max_sites=8, max_weight=1000.0)
SHAPES = {"net.weight": (1, 14), "net.bias": (1,)}
N_TRAIN = {"cleveland": 199, "hungary": 193, "switzerland": 80, "va_long_beach": 131}


@pytest.fixture(scope="module")
def pki():
    return make_pki(list(SITES))


def _ctx(site: str, job: str) -> FLContext:
    ctx = FLContext()
    ctx.set_prop(ReservedKey.RUN_NUM, job, private=False, sticky=True)
    ctx.set_prop(ReservedKey.IDENTITY_NAME, site, private=False, sticky=True)
    return ctx


def _side(chain: str) -> SecAggMask:
    f = SecAggMask()
    f.set_prop(FilterContextKey.CHAIN_TYPE, chain)
    return f


@pytest.fixture
def federation(pki):
    """A job whose four sites have agreed keys (epoch 1) and dealt round 0 (signed mask keys, shares)."""
    root, ids = pki
    job = f"job-{uuid.uuid4().hex[:8]}"
    sites = {s: SecAggSite(name=s, job=job, config=CONFIG, identity=ids[s]) for s in SITES}
    server = SecAggServer(job=job, config=CONFIG, root_pem=root)
    request = server.setup_request()
    adverts = {s: site.advertise(**request) for s, site in sites.items()}
    share_request, refused = server.accept_adverts(adverts, rnd=0)
    assert refused == {}
    server.accept_key_deals(0, {s: site.share_keys(**share_request) for s, site in sites.items()})
    yield job, sites, server
    secagg_executor._SITES.pop(job, None)


def _task(server: SecAggServer, weights: dict, rnd: int = 0) -> Shareable:
    task = DXO(DataKind.WEIGHTS, data=weights).to_shareable()
    state = server.rounds[rnd]
    shares = {s: server.routed(s, rnd)["shares"] for s in state.contributors}
    keys = {s: dict(k) for s, k in state.keys.items()}  # the round's signed mask keys, every contributor's
    payload = {"epoch": server.epoch, "rnd": rnd, "contributors": state.contributors}
    task.set_header(C.HEADER_SECAGG, {**payload, "keys": keys, "shares": shares})
    return task


def _weights(seed: int, scale: float = 0.1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: (scale * rng.normal(size=s)).astype(np.float32) for k, s in SHAPES.items()}


def _result(weights: dict, site: str) -> Shareable:
    dxo = DXO(DataKind.WEIGHTS, data=weights)
    dxo.set_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND, N_TRAIN[site])
    dxo.set_meta_prop(C.META_SITE_METRICS, {"train_loss": 0.5})
    result = dxo.to_shareable()
    result.set_header("task_id", f"t-{site}")
    return result


def _ring(sent: Shareable, size: int) -> np.ndarray:
    """The ring elements of a masked result, as the server reads them off the wire."""
    return CONFIG.fixed_point.from_wire(from_shareable(sent).data[C.SECAGG_MASKED_KEY], size=size)


def _mask_at(site: str, job: str, sites: dict, task: Shareable, local: dict) -> Shareable:
    secagg_executor._SITES[job] = sites[site]  # one process per site in FLARE: the site's own state
    ctx = _ctx(site, job)
    _side(FilterChainType.TASK_DATA_CHAIN).process(task, ctx)
    return _side(FilterChainType.TASK_RESULT_CHAIN).process(_result(local, site), ctx)


def test_the_server_unmasks_the_fedavg_mean_and_receives_only_masked_vectors(federation) -> None:
    job, sites, server = federation
    global_model = _weights(0)
    updates = {s: _weights(i + 1, scale=0.05) for i, s in enumerate(SITES)}
    size = sum(int(np.prod(s)) for s in SHAPES.values()) + 1
    for s in SITES:
        local = {k: global_model[k] + updates[s][k] for k in SHAPES}
        sent = _mask_at(s, job, sites, _task(server, global_model), local)
        dxo = from_shareable(sent)
        assert dxo.data_kind == C.SECAGG_MASKED_KIND and list(dxo.data) == [C.SECAGG_MASKED_KEY]
        wire = dxo.data[C.SECAGG_MASKED_KEY]
        assert wire.dtype == np.uint8 and wire.shape == (size * 4,)  # 32-bit ring: 4 bytes a value
        assert dxo.get_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND) == N_TRAIN[s]  # the meta goes as it came
        assert dxo.get_meta_prop(C.META_SITE_METRICS) == {"train_loss": 0.5}
        assert sent.get_header("task_id") == f"t-{s}"  # the reply's headers are kept
        plain = CONFIG.fixed_point.encode(
            np.concatenate([updates[s]["net.bias"], updates[s]["net.weight"].ravel()]), weight=N_TRAIN[s]
        )
        ring = _ring(sent, size)
        assert np.mean(ring == plain) < 0.01  # masked in (almost) every value
        server.accept_masked(0, s, ring, size=size)
    request = server.unmask_request(0, deal_next=False)
    server.accept_reveals(0, {s: sites[s].reveal(**request) for s in request["survivors"]})
    values, weight, survivors = server.aggregate(0)
    total = sum(N_TRAIN.values())
    expected = {k: sum(N_TRAIN[s] * updates[s][k].astype(np.float64) for s in SITES) / total for k in SHAPES}
    got = values / weight
    np.testing.assert_allclose(got[0], expected["net.bias"][0], atol=1e-6)
    np.testing.assert_allclose(got[1:], expected["net.weight"].ravel(), atol=1e-6)
    assert survivors == sorted(SITES)


def test_the_next_round_masks_under_fresh_keys_and_survives_a_dropout(federation) -> None:
    """Round 1 is dealt with round 0's unmask answers; switzerland drops out of it after the deal."""
    job, sites, server = federation
    global_model = _weights(0)
    size = sum(int(np.prod(s)) for s in SHAPES.values()) + 1
    for rnd, gone in ((0, ()), (1, ("switzerland",))):
        updates = {s: _weights(10 * rnd + i + 1, scale=0.05) for i, s in enumerate(SITES)}
        task = _task(server, global_model, rnd)
        assert task.get_header(C.HEADER_SECAGG)["rnd"] == rnd
        for s in SITES:
            local = {k: global_model[k] + updates[s][k] for k in SHAPES}
            sent = _mask_at(s, job, sites, task, local)
            if s not in gone:
                server.accept_masked(rnd, s, _ring(sent, size), size=size)
        request = server.unmask_request(rnd, deal_next=rnd == 0)
        assert request["dropped"] == list(gone)
        server.accept_reveals(rnd, {s: sites[s].reveal(**request) for s in request["survivors"]})
        values, weight, survivors = server.aggregate(rnd)
        others = [s for s in SITES if s not in gone]
        total = sum(N_TRAIN[s] for s in others)
        expected = {
            k: sum(N_TRAIN[s] * updates[s][k].astype(np.float64) for s in others) / total for k in SHAPES
        }
        got = values / weight
        assert survivors == others
        np.testing.assert_allclose(got[0], expected["net.bias"][0], atol=1e-6)
        np.testing.assert_allclose(got[1:], expected["net.weight"].ravel(), atol=1e-6)
    keys = {rnd: server.rounds[rnd].keys for rnd in (0, 1)}
    assert all(keys[0][s]["s_pk"] != keys[1][s]["s_pk"] for s in SITES)  # a fresh mask key every round


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("no_header", r"carries no SecAgg\+ shares"),
        ("tampered", "round 0: the b share from cleveland does not authenticate"),
        ("stale_epoch", "replayed or stale"),
        ("no_keys", r"round 0: no mask key of \['cleveland', 'switzerland', 'va_long_beach'\]; refused"),
        ("swapped_key", r"round 0: the mask key of cleveland: the signature does not match its certificate"),
        ("own_key_replaced", "round 0: the relayed mask key of this site is not its own; refused"),
    ],
)
def test_a_bad_train_task_is_refused_on_the_data_chain(federation, change: str, message: str) -> None:
    job, sites, server = federation
    task = _task(server, _weights(0))
    payload = task.get_header(C.HEADER_SECAGG)
    if change == "no_header":
        task.set_header(C.HEADER_SECAGG, None)
    elif change == "tampered":
        sealed = payload["shares"]["hungary"]["b"]["cleveland"]
        payload["shares"]["hungary"]["b"]["cleveland"] = sealed[:-1] + bytes([sealed[-1] ^ 1])
    elif change == "stale_epoch":
        payload["epoch"] = 0
    elif change == "no_keys":
        payload["keys"] = {}
    elif change == "swapped_key":
        payload["keys"]["cleveland"] = payload["keys"]["switzerland"]
    else:
        payload["keys"]["hungary"] = payload["keys"]["cleveland"]
    secagg_executor._SITES[job] = sites["hungary"]
    with pytest.raises(ValueError, match=message):
        _side(FilterChainType.TASK_DATA_CHAIN).process(task, _ctx("hungary", job))


def test_an_update_with_nan_is_refused_before_masking(federation) -> None:
    job, sites, server = federation
    global_model = _weights(0)
    local = {k: v.copy() for k, v in global_model.items()}
    local["net.bias"][0] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values in net.bias \(1 values\)"):
        _mask_at("cleveland", job, sites, _task(server, global_model), local)


def test_an_update_above_max_norm_is_clipped_to_it(federation) -> None:
    job, sites, server = federation
    global_model = _weights(0)
    local = {k: v + 10.0 for k, v in global_model.items()}  # norm sqrt(15) * 10, far above 1.0
    for s in SITES:  # the others send zero updates, so the unmasked sum is this site's clipped update
        sent = _mask_at(
            s, job, sites, _task(server, global_model), local if s == "cleveland" else global_model
        )
        server.accept_masked(0, s, _ring(sent, 16), size=16)
    request = server.unmask_request(0, deal_next=False)
    server.accept_reveals(0, {s: sites[s].reveal(**request) for s in request["survivors"]})
    values, _, _ = server.aggregate(0)
    ratio = N_TRAIN["cleveland"] / CONFIG.max_weight
    assert np.linalg.norm(values) == pytest.approx(ratio * CONFIG.max_norm, rel=1e-5)


def test_failed_replies_pass_and_collections_and_compressed_updates_are_refused(federation) -> None:
    job, sites, server = federation
    secagg_executor._SITES[job] = sites["hungary"]
    result_side = _side(FilterChainType.TASK_RESULT_CHAIN)
    failed = make_reply(ReturnCode.EXECUTION_EXCEPTION)
    assert result_side.process(failed, _ctx("hungary", job)) is failed
    part = DXO(DataKind.WEIGHTS, data=_weights(1))
    collection = DXO(DataKind.COLLECTION, data={"_model_weights_": part, "c": part}).to_shareable()
    with pytest.raises(ValueError, match="COLLECTION"):
        result_side.process(collection, _ctx("hungary", job))
    compressed = DXO(C.COMPRESSED_KIND, data={"payload": np.zeros(3, np.uint8)}).to_shareable()
    with pytest.raises(ValueError, match=r"a compressed one \(UpdateCompressor\) cannot be masked"):
        result_side.process(compressed, _ctx("hungary", job))


def test_the_executor_refuses_a_server_whose_settings_differ(federation) -> None:
    job, sites, _ = federation
    secagg_executor._SITES[job] = sites["hungary"]
    executor = SecAggExecutor(max_norm=1.0, bits=32, max_sites=8, max_weight=1000.0)
    request = DXO(C.SECAGG_MESSAGE_KIND, data={"epoch": 2, "config": {**CONFIG.as_dict(), "max_norm": 50.0}})
    reply = executor.execute(C.TASK_SECAGG_ADVERTISE, request.to_shareable(), _ctx("hungary", job), Signal())
    assert reply.get_return_code() == ReturnCode.EXECUTION_EXCEPTION
    assert "differ from this site's" in reply.get_header(C.HEADER_ERROR)
    assert executor.execute("train", Shareable(), _ctx("hungary", job), Signal()).get_return_code() == (
        ReturnCode.TASK_UNKNOWN
    )
