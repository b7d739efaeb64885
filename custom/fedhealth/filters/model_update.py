"""Which shareables a site privacy filter touches: model updates (weights or their differences) only.

A privacy scope's filters run on every task of every job under the scope: federated statistics,
metrics and model submissions too. FLARE's ``DXOFilter`` descends into a ``COLLECTION`` DXO and
fails (``AssertionError``) when its items are plain values, as in fedhealth's ``fed_stats``
result, so the scope filters look at the top-level DXO first and let everything else pass.
"""

from __future__ import annotations

import numpy as np
from nvflare.apis.dxo import DXO, DataKind, from_shareable
from nvflare.apis.shareable import ReturnCode, Shareable

MODEL_KINDS = (DataKind.WEIGHTS, DataKind.WEIGHT_DIFF)


def result_dxo(shareable: Shareable) -> DXO | None:
    """The shareable's DXO when the task succeeded and it carries one, else None."""
    if shareable.get_return_code(ReturnCode.OK) != ReturnCode.OK:
        return None
    try:
        return from_shareable(shareable)
    except ValueError:
        return None


def model_dxo(shareable: Shareable) -> DXO | None:
    """The shareable's DXO when it carries model weights or weight differences, else None."""
    dxo = result_dxo(shareable)
    return dxo if dxo is not None and dxo.data_kind in MODEL_KINDS and dxo.data else None


def nested_model(shareable: Shareable) -> bool:
    """Whether the shareable is a ``COLLECTION`` holding a model DXO (e.g. SCAFFOLD's weights and ``c``)."""
    dxo = result_dxo(shareable)
    return (
        dxo is not None
        and dxo.data_kind == DataKind.COLLECTION
        and any(isinstance(v, DXO) and v.data_kind in MODEL_KINDS for v in (dxo.data or {}).values())
    )


def local_update(local: dict, received: dict, *, who: str, hint: str = "") -> dict[str, np.ndarray]:
    """Local weights minus the global weights the site received, per layer (float64).

    Raises:
        ValueError: a local layer is not in the received model or has another shape; the message
            opens with ``who`` (the filter) and ends with ``hint``.
    """
    missing = sorted(set(local) - set(received))
    if missing:
        raise ValueError(f"{who}: layers {missing} are not in the global model this site received.")
    out = {}
    for name, value in local.items():
        array, ref = np.asarray(value), np.asarray(received[name])
        if array.shape != ref.shape:
            raise ValueError(
                f"{who}: layer {name!r} has shape {array.shape}, the received global model {ref.shape}.{hint}"
            )
        out[name] = array.astype(np.float64) - ref.astype(np.float64)
    return out
