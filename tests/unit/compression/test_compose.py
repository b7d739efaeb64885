"""Compression composes with privacy filters only in the defined order, and never with HE."""

from __future__ import annotations

import pytest

from fedhealth.compression.compose import COMPRESSOR, CompositionError, check_client_filters

NOISE = "fedhealth.filters.gaussian_noise.GaussianNoise"
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
