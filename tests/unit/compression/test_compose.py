"""Compression composes with privacy filters only in the defined order, and never with HE."""

from __future__ import annotations

import numpy as np
import pytest
from nvflare.apis.dxo import DXO, DataKind, from_shareable
from nvflare.apis.fl_constant import FilterKey, FLContextKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.utils.task_utils import apply_filters
from nvflare.app_common.filters.exclude_vars import ExcludeVars
from nvflare.private.privacy_manager import Scope

from fedhealth.compression.compose import COMPRESSOR, CompositionError, check_client_filters
from fedhealth.filters.update_compressor import UpdateCompressor
from fedhealth.filters.update_decompressor import UpdateDecompressor

NOISE = "fedhealth.filters.dp_update.DPUpdate"
HE_ENC = "nvflare.app_opt.he.model_encryptor.HEModelEncryptor"


def _config(result: list[str], data: list[str] | None = None) -> dict:
    return {
        "task_result_filters": [{"tasks": ["train"], "filters": [{"path": p} for p in result]}],
        "task_data_filters": [{"tasks": ["train"], "filters": [{"path": p} for p in data or []]}],
    }


@pytest.mark.parametrize("result", [[COMPRESSOR], [NOISE, COMPRESSOR], [HE_ENC], []])
def test_allowed(result):
    check_client_filters(_config(result))


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ([COMPRESSOR, NOISE], "must be the last task result filter"),
        ([HE_ENC, COMPRESSOR], "combines homomorphic encryption with update compression"),
        ([COMPRESSOR, HE_ENC], "combines homomorphic encryption"),
    ],
)
def test_refused(result, message):
    with pytest.raises(CompositionError, match=message):
        check_client_filters(_config(result))


def test_site_privacy_scope_filters_run_before_the_job_compressor():
    """FLARE applies a site's privacy-scope filters first, so the compressor sees their output."""
    scope = Scope()
    scope.add_task_result_filter(ExcludeVars(exclude_vars=["fc.bias"]), FilterKey.OUT)
    ctx = FLContext()
    ctx.set_prop(FLContextKey.SCOPE_OBJECT, scope, private=True, sticky=False)
    job_filters = {
        f"train{FilterKey.DELIMITER}{FilterKey.OUT}": [UpdateCompressor(mode="int8", error_feedback=False)]
    }
    update = {"fc.weight": np.linspace(-1, 1, 600, dtype=np.float32), "fc.bias": np.ones(3, np.float32)}
    sent = apply_filters(
        "task_result_filters",
        DXO(DataKind.WEIGHTS, data=update).to_shareable(),
        ctx,
        job_filters,
        "train",
        FilterKey.OUT,
    )
    out = from_shareable(UpdateDecompressor().process(sent, FLContext()))
    assert set(out.data) == {"fc.weight"}  # the scope removed the bias before compression
    assert np.max(np.abs(out.data["fc.weight"] - update["fc.weight"])) <= 2 / 255 / 2 + 1e-6
