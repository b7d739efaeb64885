"""A top-k schedule end to end at a site: the topk algorithm chooses (dense warm-up, then sparse), the
reply carries the round, the UpdateCompressor encodes that round's setting, the server decodes it;
a filter whose schedule disagrees with the algorithm's, or a reply without its round, is refused."""

from __future__ import annotations

import numpy as np
import pytest
from flare_doubles import site_context
from nvflare.apis.dxo import from_shareable
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.app_constant import AppConstants

from fedhealth import constants as C
from fedhealth.client.base import AlgorithmContext, RoundInput, RoundState
from fedhealth.client.topk import TopK
from fedhealth.executors.round_messages import round_reply
from fedhealth.filters.update_compressor import UpdateCompressor
from fedhealth.filters.update_decompressor import UpdateDecompressor

JOB = "job-1"
SCHEDULE = {"k_fraction": 0.01, "warmup_rounds": 2, "value_dtype": "float32"}
SHAPES = {"conv.weight": (16, 1, 3, 3), "fc.weight": (64, 100)}
# round -> (how each tensor travels, entries of fc.weight that reach the server)
EXPECTED = {0: ("raw", 6400), 1: ("raw", 6400), 2: ("topk", 64), 3: ("topk", 64)}


def _ctx(tmp_path) -> FLContext:
    for folder in ("startup", "local"):
        (tmp_path / "kit" / folder).mkdir(parents=True, exist_ok=True)
    return site_context(tmp_path / "kit", "site-1", JOB)


def _state(round_index: int, rng: np.random.Generator) -> RoundState:
    start = {k: np.zeros(s) for k, s in SHAPES.items()}
    trained = {k: rng.normal(0, 0.01, s).astype(np.float32) for k, s in SHAPES.items()}
    rnd = RoundInput(weights=start, lr=None, round_index=round_index, num_rounds=4)
    state = RoundState(rnd=rnd, model=None, received=None, start=start, lr=0.001, config=None)  # type: ignore[arg-type]
    state.update, state.stats = trained, {C.M_STEPS: 3}
    return state


def _algorithm(tmp_path) -> TopK:
    algorithm = TopK(**SCHEDULE)
    algorithm.start(AlgorithmContext(task=None, site=None, local={}, settings={}, run_dir=tmp_path))  # type: ignore[arg-type]
    return algorithm


def _reply(algorithm: TopK, round_index: int, rng: np.random.Generator):
    state = _state(round_index, rng)
    algorithm.after_round(state)
    return state, round_reply(state, n_train=50, metrics=state.metrics, metadata={})


def test_dense_warmup_then_sparse_through_the_filters(tmp_path):
    ctx = _ctx(tmp_path)
    algorithm, rng = _algorithm(tmp_path), np.random.default_rng(7)
    compressor = UpdateCompressor(mode="topk", error_feedback=False, **SCHEDULE)
    sizes = []
    for r, (kind, kept) in EXPECTED.items():
        state, reply = _reply(algorithm, r, rng)
        assert reply.get_header(AppConstants.CURRENT_ROUND) == r
        assert state.metrics[C.M_TOPK_K_FRACTION] == (1.0 if r < 2 else 0.01)
        assert state.metrics[C.M_COMPRESSION] == "topk 1 to 0.01 +EF (2 dense rounds)"
        sent = compressor.process(reply, ctx)
        payload = from_shareable(sent).data
        assert [e["kind"] for e in payload["index"]] == [kind, kind]
        sizes.append(from_shareable(sent).get_meta_prop(C.META_COMPRESSION)[C.M_BYTES_SENT])
        out = from_shareable(UpdateDecompressor().process(sent, FLContext()))
        assert np.count_nonzero(out.data["fc.weight"]) == kept
        for name in SHAPES:  # the server gets exactly what the algorithm chose to send
            np.testing.assert_array_equal(out.data[name], state.update[name])
    n_floats = sum(int(np.prod(s)) for s in SHAPES.values())
    assert sizes[0] == sizes[1] > 4 * n_floats  # the warm-up rounds cost the dense float32 bytes
    assert sizes[2] == sizes[3] < 4 * n_floats / 20


def test_filter_that_disagrees_with_the_algorithm_is_refused(tmp_path):
    ctx = _ctx(tmp_path)
    _, reply = _reply(_algorithm(tmp_path), 0, np.random.default_rng(8))
    plain = UpdateCompressor(mode="topk", k_fraction=0.01, error_feedback=False, value_dtype="float32")
    with pytest.raises(ValueError, match=r"round None: the topk algorithm sent 1 of each tensor but this "):
        plain.process(reply, ctx)
    late = UpdateCompressor(mode="topk", error_feedback=False, **{**SCHEDULE, "warmup_rounds": 1})
    _, reply = _reply(_algorithm(tmp_path / "b"), 1, np.random.default_rng(8))
    with pytest.raises(ValueError, match=r"round 1: the topk algorithm sent 1 of each tensor but .* 0.01"):
        late.process(reply, ctx)


def test_scheduled_filter_needs_the_round(tmp_path):
    ctx = _ctx(tmp_path)
    _, reply = _reply(_algorithm(tmp_path), 2, np.random.default_rng(9))
    reply.set_header(AppConstants.CURRENT_ROUND, None)
    compressor = UpdateCompressor(mode="topk", error_feedback=False, **SCHEDULE)
    with pytest.raises(ValueError, match=r"train result's 'current_round' header is None: the executor must"):
        compressor.process(reply, ctx)


def test_filter_with_its_own_error_feedback_follows_the_schedule(tmp_path):
    ctx = _ctx(tmp_path)
    compressor = UpdateCompressor(mode="topk", error_feedback=True, **SCHEDULE)
    rng = np.random.default_rng(10)
    kinds = []
    for r in range(3):
        state = _state(r, rng)
        state.kind = "WEIGHT_DIFF"
        sent = compressor.process(round_reply(state, n_train=50, metrics={}, metadata={}), ctx)
        kinds.append(from_shareable(sent).data["index"][0]["kind"])
    assert kinds == ["raw", "raw", "topk"]
    with np.load(tmp_path / "kit" / JOB / C.RESIDUAL_FILE) as saved:
        assert int(saved["__rounds__"]) == 3  # the residual file counts every round, dense ones too
