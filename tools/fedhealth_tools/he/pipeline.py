"""FLARE's HE components driven in one process: sites encrypt, the server aggregates, sites decrypt.

The same classes and arguments as ``jobs/heart_he`` (``HEModelEncryptor``,
``HEInTimeAccumulateWeightedAggregator``, the kit's HE generator, ``HEModelDecryptor`` and
:class:`~fedhealth.filters.he_shape_restorer.HEShapeRestorer`), each loading its TenSEAL context
from a provisioned kit's ``startup/`` folder with FLARE's signature check, and every message
FOBS-serialized between the two sides as on the wire. For tests (equivalence with clear FedAvg,
what the server can and cannot decrypt) and for the benchmark's component timings.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tenseal as ts
from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import ReservedKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.app_common.abstract.model import make_model_learnable
from nvflare.app_common.app_constant import AppConstants
from nvflare.app_opt.he import decomposers
from nvflare.fuel.sec.security_content_service import SecurityContentManager, SecurityContentService
from nvflare.fuel.utils import fobs

from fedhealth.filters.wire import serialized_size


@contextmanager
def as_participant(startup_dir: Path) -> Iterator[None]:
    """Let FLARE's security content service read (and verify) files from this kit's startup folder."""
    saved = (SecurityContentService.security_content_manager, SecurityContentService.content_folder)
    SecurityContentService.security_content_manager = SecurityContentManager(str(startup_dir))
    SecurityContentService.content_folder = str(startup_dir)
    try:
        yield
    finally:
        SecurityContentService.security_content_manager, SecurityContentService.content_folder = saved


def _ctx(name: str, current_round: int = 0) -> FLContext:
    fl_ctx = FLContext()
    fl_ctx.set_prop(ReservedKey.IDENTITY_NAME, name, private=False, sticky=False)
    fl_ctx.set_prop(AppConstants.CURRENT_ROUND, current_round, private=False, sticky=False)
    fl_ctx.set_peer_context(fl_ctx)
    return fl_ctx


def wire(shareable: Shareable) -> Shareable:
    """The shareable as the other side receives it (FOBS round trip)."""
    decomposers.register()
    serialized_size(shareable)  # registers FLARE's own, common and numpy decomposers first
    return fobs.loads(fobs.dumps(shareable))


@dataclass
class HERound:
    """Timings (s) and sizes (bytes) of one encrypted FedAvg round over the sites' updates."""

    encrypt_s: dict[str, float] = field(default_factory=dict)
    aggregate_s: float = 0.0
    decrypt_s: float = 0.0
    bytes_sent: dict[str, int] = field(default_factory=dict)
    bytes_plain: dict[str, int] = field(default_factory=dict)
    bytes_ciphertexts: dict[str, int] = field(default_factory=dict)  # the vectors alone, no context
    global_model: Shareable | None = None  # what the server sends back (encrypted)
    result: dict[str, np.ndarray] = field(default_factory=dict)  # what a site decrypts


def encrypt_update(encryptor, site: str, weights: dict[str, np.ndarray], n_samples: int) -> Shareable:
    """A site's WEIGHTS update after the job's result filter, as the server receives it."""
    dxo = DXO(data_kind=DataKind.WEIGHTS, data={k: np.array(v, dtype=np.float32) for k, v in weights.items()})
    dxo.set_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND, n_samples)
    return encryptor.process(dxo.to_shareable(), _ctx(site))


def he_fedavg_round(
    *,
    site_kit: Path,
    server_kit: Path,
    updates: dict[str, tuple[dict[str, np.ndarray], int]],
    initial: dict[str, np.ndarray],
    encrypt_layers: list[str] | None = None,
) -> HERound:
    """Encrypt each site's ``(weights, n_samples)``, aggregate at the server, decrypt at a site."""
    from nvflare.app_opt.he.intime_accumulate_model_aggregator import HEInTimeAccumulateWeightedAggregator
    from nvflare.app_opt.he.model_decryptor import HEModelDecryptor
    from nvflare.app_opt.he.model_encryptor import HEModelEncryptor

    from fedhealth.filters.he_shape_restorer import HEShapeRestorer
    from fedhealth.shareables.he_scheduled_generator import HEScheduledShareableGenerator

    out = HERound()
    arrived = {}
    with as_participant(site_kit):
        encryptor = HEModelEncryptor(encrypt_layers=encrypt_layers, weigh_by_local_iter=True)
        encryptor.handle_event(EventType.START_RUN, _ctx("site"))
        for site, (weights, n) in updates.items():
            start = time.perf_counter()
            sent = encrypt_update(encryptor, site, weights, n)
            out.encrypt_s[site] = time.perf_counter() - start
            out.bytes_sent[site] = serialized_size(sent)
            vectors = [v for v in from_shareable(sent).data.values() if isinstance(v, ts.CKKSVector)]
            out.bytes_ciphertexts[site] = sum(len(v.serialize()) for v in vectors)
            plain = DXO(DataKind.WEIGHTS, data={k: np.asarray(v, np.float32) for k, v in weights.items()})
            out.bytes_plain[site] = serialized_size(plain.to_shareable())
            arrived[site] = wire(sent)
    with as_participant(server_kit):
        server_ctx = _ctx("server")
        aggregator = HEInTimeAccumulateWeightedAggregator(
            expected_data_kind=DataKind.WEIGHTS,
            weigh_by_local_iter=False,
            aggregation_weights=dict.fromkeys(updates, 1.0),
        )
        generator = HEScheduledShareableGenerator(lr=0.01)
        for component in (aggregator, generator):
            component.handle_event(EventType.START_RUN, server_ctx)
        generator.learnable_to_shareable(
            make_model_learnable(dict(initial), {}), server_ctx
        )  # round 0: shapes
        start = time.perf_counter()
        for site, shareable in arrived.items():
            shareable.set_peer_props({ReservedKey.IDENTITY_NAME: site})
            shareable.add_cookie(AppConstants.CONTRIBUTION_ROUND, 0)
            if not aggregator.accept(shareable, server_ctx):
                raise RuntimeError(f"the HE aggregator refused {site}'s update")
        aggregate = aggregator.aggregate(server_ctx)
        server_ctx.set_prop(AppConstants.GLOBAL_MODEL, make_model_learnable(dict(initial), {}), private=True)
        learnable = generator.shareable_to_learnable(aggregate, server_ctx)
        server_ctx.set_prop(AppConstants.CURRENT_ROUND, 1, private=False, sticky=False)
        out.global_model = generator.learnable_to_shareable(learnable, server_ctx)
        out.aggregate_s = time.perf_counter() - start
    with as_participant(site_kit):
        decryptor, restorer = HEModelDecryptor(), HEShapeRestorer()
        decryptor.handle_event(EventType.START_RUN, _ctx("site"))
        received = wire(out.global_model)
        start = time.perf_counter()
        received = restorer.process(decryptor.process(received, _ctx("site")), _ctx("site"))
        out.decrypt_s = time.perf_counter() - start
        out.result = {k: np.asarray(v) for k, v in from_shareable(received).data.items()}
    return out


def clear_fedavg(
    updates: dict[str, tuple[dict[str, np.ndarray], int]],
) -> tuple[dict[str, np.ndarray], float]:
    """FLARE's clear aggregator (weighted by samples) on the same updates; returns it and its seconds."""
    from nvflare.app_common.aggregators.intime_accumulate_model_aggregator import (
        InTimeAccumulateWeightedAggregator,
    )

    aggregator = InTimeAccumulateWeightedAggregator(
        expected_data_kind=DataKind.WEIGHTS, aggregation_weights=dict.fromkeys(updates, 1.0)
    )
    fl_ctx = _ctx("server")
    aggregator.handle_event(EventType.START_RUN, fl_ctx)
    shareables = []
    for site, (weights, n) in updates.items():
        dxo = DXO(DataKind.WEIGHTS, data=dict(weights))
        dxo.set_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND, n)
        shareable = wire(dxo.to_shareable())
        shareable.set_peer_props({ReservedKey.IDENTITY_NAME: site})
        shareable.add_cookie(AppConstants.CONTRIBUTION_ROUND, 0)
        shareables.append(shareable)
    start = time.perf_counter()
    for shareable in shareables:
        if not aggregator.accept(shareable, fl_ctx):
            raise RuntimeError("the clear aggregator refused an update")
    result = from_shareable(aggregator.aggregate(fl_ctx)).data
    return result, time.perf_counter() - start
