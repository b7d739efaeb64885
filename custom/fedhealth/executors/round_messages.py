"""FLARE messages <-> a round of the FLARE-free site runner (:mod:`fedhealth.client`).

A train task carries the global model as a ``WEIGHTS`` DXO (the round's learning rate in its meta), or
a ``COLLECTION`` whose ``_model_weights_`` part is that DXO and whose other parts are the algorithm's
extras (SCAFFOLD's server control variate). The reply is the update DXO, or a collection of it and the
algorithm's extra parts, with the round's metrics, the step count (FedNova's tau_i) and the FedAvg
weight (training rows) in its meta, and the round in its ``CURRENT_ROUND`` header (as FLARE's own
``FLModelUtils.to_shareable`` sets it; a top-k schedule in the compression filter reads it).
"""

from __future__ import annotations

import numpy as np
from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.shareable import Shareable
from nvflare.app_common.app_constant import AppConstants

from fedhealth import constants as C
from fedhealth.client.base import RoundInput, RoundState


def model_dxo(shareable: Shareable) -> tuple[DXO, dict[str, dict]]:
    """The task's model DXO and the other parts of a collection (name -> weights)."""
    dxo = from_shareable(shareable)
    extras: dict[str, dict] = {}
    if dxo.data_kind == DataKind.COLLECTION:
        parts = dict(dxo.data or {})
        if C.MODEL_PART not in parts:
            raise ValueError(
                f"the train task's collection has no {C.MODEL_PART!r} part, only {sorted(parts)}"
            )
        dxo = parts.pop(C.MODEL_PART)
        extras = {name: dict(part.data) for name, part in parts.items()}
    if dxo.data_kind != DataKind.WEIGHTS:
        raise ValueError(f"expected model weights, got a {dxo.data_kind} DXO")
    return dxo, extras


def round_input(shareable: Shareable) -> RoundInput:
    """The runner's view of a train (or validate) task."""
    dxo, extras = model_dxo(shareable)
    lr = dxo.get_meta_prop(C.META_LEARNING_RATE)
    return RoundInput(
        weights={k: np.asarray(v) for k, v in dxo.data.items()},
        lr=float(lr) if lr is not None else None,
        round_index=int(shareable.get_header(AppConstants.CURRENT_ROUND, 0) or 0),
        num_rounds=int(shareable.get_header(AppConstants.NUM_ROUNDS, 0) or 0),
        extras=extras,
    )


def round_reply(state: RoundState, *, n_train: int, metrics: dict, metadata: dict) -> Shareable:
    """The train task's result: the update (and any extra parts) with the round's meta."""
    kind = DataKind.WEIGHT_DIFF if state.kind == "WEIGHT_DIFF" else DataKind.WEIGHTS
    out = DXO(data_kind=kind, data=state.update)
    out.set_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND, n_train)  # FedAvg weight = training rows
    out.set_meta_prop(MetaKey.INITIAL_METRICS, metrics.get(f"global_{C.M_ACCURACY}"))
    out.set_meta_prop(C.META_LOCAL_STEPS, int(state.stats[C.M_STEPS]))  # FedNova's tau_i
    out.set_meta_prop(C.META_SITE_METRICS, metrics)
    if metadata:
        out.set_meta_prop(C.META_SITE_METADATA, metadata)  # declared by the site; no patient data
    if not state.extras:
        return _with_round(out.to_shareable(), state)
    parts = {C.MODEL_PART: out}
    for name, weights in state.extras.items():
        part = DXO(data_kind=DataKind.WEIGHT_DIFF, data=weights)
        part.set_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND, n_train)
        parts[name] = part
    collection = DXO(data_kind=DataKind.COLLECTION, data=parts)
    collection.set_meta_prop(C.META_SITE_METRICS, metrics)
    return _with_round(collection.to_shareable(), state)


def _with_round(reply: Shareable, state: RoundState) -> Shareable:
    reply.set_header(AppConstants.CURRENT_ROUND, state.rnd.round_index)
    return reply
