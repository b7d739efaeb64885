"""The compression filters: site to server round trip, byte accounting, residual on disk, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from flare_doubles import WorkspaceEngine
from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.fl_constant import ReservedKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.workspace import Workspace

from fedhealth import constants as C
from fedhealth.compression.compose import CompositionError
from fedhealth.filters.update_compressor import UpdateCompressor
from fedhealth.filters.update_decompressor import UpdateDecompressor
from fedhealth.filters.wire import serialized_size

JOB = "job-1"
RNG = np.random.default_rng(3)
UPDATE = {"fc.weight": RNG.normal(0, 0.01, (64, 400)).astype(np.float32), "fc.bias": np.zeros(64, np.float32)}


def _ctx(root, client_config: dict | None = None) -> FLContext:
    for folder in ("startup", "local"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    workspace = Workspace(str(root), site_name="site-1")
    config_dir = root / JOB / "app_site-1" / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "config_fed_client.json").write_text(json.dumps(client_config or {}))
    ctx = FLContext()
    ctx.set_prop(ReservedKey.ENGINE, WorkspaceEngine(workspace), private=True, sticky=False)
    ctx.set_prop(ReservedKey.RUN_NUM, JOB, private=False, sticky=False)
    return ctx


def _update_shareable(kind=DataKind.WEIGHT_DIFF, metrics: dict | None = None):
    dxo = DXO(kind, data=dict(UPDATE))
    dxo.set_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND, 123)
    dxo.set_meta_prop(C.META_SITE_METRICS, metrics or {"round": 0, "n_train": 123})
    return dxo.to_shareable()


# mode, k, at least this many times fewer bytes on the wire
CASES = [("fp16", 1.0, 1.9), ("int8", 1.0, 3.8), ("int4", 1.0, 7.0), ("topk", 0.01, 50.0), ("topk", 0.1, 9.0)]


@pytest.mark.parametrize(("mode", "k", "min_ratio"), CASES)
def test_site_to_server_round_trip_and_byte_accounting(tmp_path, mode, k, min_ratio):
    ctx = _ctx(tmp_path)
    raw_size = serialized_size(_update_shareable())
    sent = UpdateCompressor(mode=mode, k_fraction=k).process(_update_shareable(), ctx)
    on_wire = serialized_size(sent)
    dxo = from_shareable(sent)
    assert dxo.data_kind == C.COMPRESSED_KIND
    info = dxo.get_meta_prop(C.META_COMPRESSION)
    assert info[C.M_BYTES_RAW] == raw_size and info[C.M_BYTES_SENT] == on_wire  # the real serialized sizes
    assert raw_size / on_wire >= min_ratio
    restored = UpdateDecompressor().process(sent, FLContext())
    out = from_shareable(restored)
    assert out.data_kind == DataKind.WEIGHT_DIFF
    assert out.get_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND) == 123  # FedAvg weight survives
    metrics = out.get_meta_prop(C.META_SITE_METRICS)
    assert metrics[C.M_BYTES_RECEIVED] == on_wire == metrics[C.M_BYTES_SENT]
    assert metrics[C.M_BYTES_RAW] == raw_size and metrics["n_train"] == 123
    assert {k: v.shape for k, v in out.data.items()} == {k: v.shape for k, v in UPDATE.items()}


def test_error_feedback_residual_is_written_to_the_run_folder(tmp_path):
    ctx = _ctx(tmp_path)
    UpdateCompressor(mode="topk", k_fraction=0.01, value_dtype="float32").process(_update_shareable(), ctx)
    path = tmp_path / JOB / C.RESIDUAL_FILE
    assert path.is_file()
    with np.load(path) as saved:
        assert int(saved["__rounds__"]) == 1
        kept = np.count_nonzero(saved["r/fc.weight"] == 0)
    assert kept == int(np.ceil(0.01 * UPDATE["fc.weight"].size))  # sent entries leave no residual
    # A restarted site (a new filter object) continues from the saved residual.
    again = UpdateCompressor(mode="topk", k_fraction=0.01, value_dtype="float32")
    again.process(_update_shareable(), ctx)
    with np.load(path) as saved:
        assert int(saved["__rounds__"]) == 2


def test_topk_on_full_weights_is_refused(tmp_path):
    with pytest.raises(ValueError, match="list the executor's 'topk' client algorithm"):
        UpdateCompressor(mode="topk").process(_update_shareable(DataKind.WEIGHTS), _ctx(tmp_path))


def test_global_model_quantized_for_the_sites(tmp_path):
    weights = DXO(DataKind.WEIGHTS, data=dict(UPDATE)).to_shareable()
    sent = UpdateCompressor(mode="int8", error_feedback=False).process(weights, _ctx(tmp_path))
    out = from_shareable(UpdateDecompressor().process(sent, FLContext()))
    assert out.data_kind == DataKind.WEIGHTS
    assert np.max(np.abs(out.data["fc.weight"] - UPDATE["fc.weight"])) < 2e-4


def test_encrypted_update_is_refused(tmp_path):
    shareable = _update_shareable()
    dxo = from_shareable(shareable)
    dxo.set_meta_prop(MetaKey.PROCESSED_ALGORITHM, "CKKS")
    with pytest.raises(CompositionError, match="encrypted updates cannot be compressed"):
        UpdateCompressor(mode="int8").process(dxo.to_shareable(), _ctx(tmp_path))


def test_job_combining_he_and_compression_is_refused_at_first_use(tmp_path):
    he_job = {
        "task_result_filters": [
            {
                "tasks": ["train"],
                "filters": [
                    {"path": "nvflare.app_opt.he.model_encryptor.HEModelEncryptor"},
                    {"path": "fedhealth.filters.update_compressor.UpdateCompressor"},
                ],
            }
        ]
    }
    with pytest.raises(CompositionError, match="combines homomorphic encryption"):
        UpdateCompressor(mode="int8").process(_update_shareable(), _ctx(tmp_path, he_job))
