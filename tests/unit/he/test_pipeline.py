"""FLARE's HE components with real TenSEAL ciphertexts from a provisioned kit.

The server aggregates what it cannot read; a site decrypts it; the result is clear FedAvg's.
"""

from __future__ import annotations

import numpy as np
import pytest
import tenseal as ts
from nvflare.apis.dxo import from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_context import FLContext
from nvflare.app_opt.he.homomorphic_encrypt import load_tenseal_context_from_workspace

from fedhealth import constants as C
from fedhealth.models.state import to_numpy
from fedhealth.models.tabular import TabularNet
from fedhealth_tools.he.pipeline import as_participant, clear_fedavg, encrypt_update, he_fedavg_round, wire
from fedhealth_tools.poc.workspace import PocLayout

# Sites' training-set sizes (FedAvg weights), as in the heart data.
N_TRAIN = {"cleveland": 199, "hungary": 172, "switzerland": 30, "va_long_beach": 85}
# (model architecture, layers the job encrypts: None = all)
MODELS = [("logreg", None), ("mlp", None), ("mlp", ["net.0.weight", "net.3.weight"])]


def _updates(arch: str, seed: int = 0) -> tuple[dict, dict]:
    initial = to_numpy(TabularNet(in_features=14, arch=arch, hidden=16, seed=0))
    rng = np.random.default_rng(seed)
    updates = {
        site: ({k: v + rng.normal(0, 0.5, v.shape).astype(np.float32) for k, v in initial.items()}, n)
        for site, n in N_TRAIN.items()
    }
    return initial, updates


def _clear_fedavg(updates: dict) -> dict[str, np.ndarray]:
    return clear_fedavg(updates)[0]


@pytest.mark.parametrize(("arch", "layers"), MODELS)
def test_he_aggregate_equals_clear_fedavg(he_kits: PocLayout, arch: str, layers: list[str] | None) -> None:
    initial, updates = _updates(arch)
    result = he_fedavg_round(
        site_kit=he_kits.kit("cleveland") / "startup",
        server_kit=he_kits.kit(he_kits.server) / "startup",
        updates=updates,
        initial=initial,
        encrypt_layers=layers,
    )
    clear = _clear_fedavg(updates)
    assert set(result.result) == set(clear)
    for name, value in clear.items():
        assert result.result[name].shape == value.shape, name  # shapes restored at the site
        assert float(np.max(np.abs(result.result[name] - value))) < 1e-3, name
    # What travelled: ciphertexts for the encrypted layers, far larger than the clear update.
    sent = from_shareable(result.global_model).data
    encrypted = {k for k, v in sent.items() if isinstance(v, bytes)}
    assert encrypted == set(layers or initial)
    for site in N_TRAIN:
        assert result.bytes_sent[site] > 50 * result.bytes_plain[site], site


def test_server_context_cannot_decrypt_the_aggregate_a_site_context_can(he_kits: PocLayout) -> None:
    initial, updates = _updates("logreg", seed=1)
    server_kit = he_kits.kit(he_kits.server) / "startup"
    site_kit = he_kits.kit("hungary") / "startup"
    result = he_fedavg_round(
        site_kit=he_kits.kit("cleveland") / "startup", server_kit=server_kit, updates=updates, initial=initial
    )
    aggregate = from_shareable(result.global_model).data["net.weight"]
    assert isinstance(aggregate, bytes)
    with as_participant(server_kit):
        server_ctx = load_tenseal_context_from_workspace(C.HE_SERVER_CONTEXT_FILE, FLContext())
    assert server_ctx.is_private() is False
    vector = ts.ckks_vector_from(server_ctx, aggregate)
    with pytest.raises(ValueError, match="doesn't hold a secret_key"):
        vector.decrypt()
    with as_participant(site_kit):  # any site's context: the sites share the key
        site_ctx = load_tenseal_context_from_workspace(C.HE_SITE_CONTEXT_FILE, FLContext())
    decrypted = np.array(ts.ckks_vector_from(site_ctx, aggregate).decrypt())
    expected = _clear_fedavg(updates)["net.weight"].ravel()
    assert float(np.max(np.abs(decrypted - expected))) < 1e-3


def test_an_update_on_the_wire_carries_no_secret_key(he_kits: PocLayout) -> None:
    """FLARE's CKKS decomposer ships the vector's context with it: never the secret key."""
    from nvflare.app_opt.he.model_encryptor import HEModelEncryptor

    initial, updates = _updates("logreg")
    with as_participant(he_kits.kit("cleveland") / "startup"):
        encryptor = HEModelEncryptor()
        encryptor.handle_event(EventType.START_RUN, FLContext())
        sent = encrypt_update(encryptor, "cleveland", *updates["cleveland"])
    arrived = from_shareable(wire(sent)).data
    assert all(isinstance(v, ts.CKKSVector) for v in arrived.values())
    assert not any(v.context().is_private() for v in arrived.values())
