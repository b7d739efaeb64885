"""HEUpdateMeter at the server: measures a real encrypted update and records it in the site metrics."""

from __future__ import annotations

import numpy as np
import pytest
from nvflare.apis.dxo import DXO, DataKind, from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_context import FLContext
from nvflare.app_opt.he.model_encryptor import HEModelEncryptor

from fedhealth import constants as C
from fedhealth.filters.he_update_meter import HEUpdateMeter
from fedhealth.filters.wire import serialized_size
from fedhealth_tools.he.pipeline import as_participant, encrypt_update, wire
from fedhealth_tools.poc.workspace import PocLayout

WEIGHTS = {
    "net.weight": np.linspace(-1, 1, 14, dtype=np.float32).reshape(1, 14),
    "net.bias": np.ones(1, np.float32),
}
# (layers the site encrypts, expected encrypted, expected clear)
CASES = [(None, ["net.bias", "net.weight"], []), (["net.weight"], ["net.weight"], ["net.bias"])]


@pytest.mark.parametrize(("layers", "encrypted", "clear"), CASES)
def test_meter_records_layers_and_sizes(
    he_kits: PocLayout, layers, encrypted: list[str], clear: list[str]
) -> None:
    with as_participant(he_kits.kit("cleveland") / "startup"):
        encryptor = HEModelEncryptor(encrypt_layers=layers)
        encryptor.handle_event(EventType.START_RUN, FLContext())
        dxo = DXO(DataKind.WEIGHTS, data=dict(WEIGHTS))
        sent = encrypt_update(encryptor, "cleveland", WEIGHTS, 199)
    update = from_shareable(sent)
    update.set_meta_prop(C.META_SITE_METRICS, {"round": 0, C.M_N_TRAIN: 199})
    arrived = wire(update.to_shareable())
    with as_participant(he_kits.kit(he_kits.server) / "startup"):
        meter = HEUpdateMeter()
        meter.handle_event(EventType.START_RUN, FLContext())
        size = serialized_size(arrived)
        out = from_shareable(meter.process(arrived, FLContext()))
    facts = out.get_meta_prop(C.META_SITE_METRICS)[C.M_HE]
    assert (facts["scheme"], facts["poly_modulus_degree"], facts["scale_bits"]) == ("CKKS", 8192, 40)
    assert facts["encrypted_layers"] == encrypted and facts["clear_layers"] == clear
    assert facts["values_encrypted"] + facts["values_clear"] == 15
    assert facts[C.M_HE_BYTES_SENT] == size  # the message as it arrived
    assert facts[C.M_HE_BYTES_PLAIN] < 5_000 < 800_000 * len(encrypted) < facts[C.M_HE_BYTES_SENT]
    assert dxo.data_kind == out.data_kind  # the update itself is untouched
