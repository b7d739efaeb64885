"""Gives a decrypted model its tensor shapes back, at the site, before the executor sees it.

FLARE's ``HEModelEncryptor`` flattens every tensor (encrypted or not) and ``HEModelDecryptor``
returns flat lists, so the global model of round 1 and later reaches the site without shapes. The
server's :class:`~fedhealth.shareables.he_scheduled_generator.HEScheduledShareableGenerator` sends
the shapes in the DXO meta; this filter, placed after the decryptor in the site's
``task_data_filters``, reshapes each tensor to them. It keeps the last shapes it saw in the site's
run folder, for a model that arrives without them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from nvflare.apis.dxo import DXO, DataKind
from nvflare.apis.dxo_filter import DXOFilter
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable

from fedhealth import constants as C


def restore_shapes(weights: dict, shapes: dict[str, list[int]]) -> dict[str, np.ndarray]:
    """``weights`` as float32 arrays of the given shapes (names without a shape are kept as they are).

    Raises:
        ValueError: a tensor's number of values does not fit its shape.
    """
    out = {}
    for name, values in weights.items():
        array = np.asarray(values, dtype=np.float32)
        shape = shapes.get(name)
        if shape is not None:
            if array.size != int(np.prod(shape)):
                raise ValueError(
                    f"the received tensor {name!r} has {array.size} values but the model's shape is {shape}."
                )
            array = array.reshape(shape)
        out[name] = array
    return out


class HEShapeRestorer(DXOFilter):
    """Reshape the flat tensors of a decrypted WEIGHTS DXO to the model's shapes."""

    def __init__(self) -> None:
        super().__init__(supported_data_kinds=[DataKind.WEIGHTS], data_kinds_to_filter=[DataKind.WEIGHTS])
        self._shapes: dict[str, list[int]] | None = None

    def _file(self, fl_ctx: FLContext) -> Path | None:
        engine = fl_ctx.get_engine()
        if engine is None:
            return None
        return Path(engine.get_workspace().get_run_dir(fl_ctx.get_job_id())) / C.HE_SHAPES_FILE

    def process_dxo(self, dxo: DXO, shareable: Shareable, fl_ctx: FLContext) -> DXO | None:
        shapes = dxo.get_meta_prop(C.META_MODEL_SHAPES, None)
        path = self._file(fl_ctx)
        if isinstance(shapes, dict):
            if shapes != self._shapes and path is not None:
                path.write_text(json.dumps(shapes))
            self._shapes = shapes
        elif self._shapes is None and path is not None and path.is_file():
            self._shapes = json.loads(path.read_text())
        if not self._shapes:
            if any(np.ndim(v) == 1 and np.size(v) > 1 for v in dxo.data.values()):
                self.log_warning(fl_ctx, "a model arrived without tensor shapes; it is passed on flat")
            return None
        dxo.data = restore_shapes(dxo.data, self._shapes)
        return dxo
