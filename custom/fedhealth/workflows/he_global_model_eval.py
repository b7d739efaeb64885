"""Evaluate only the (encrypted) global model at every site: no site's local model leaves it.

The stock heart jobs end with ``CrossSiteModelEval``, whose ``submit_model`` task sends each site's
local model to the server in clear. In an HE job that would undo the encryption of the updates, so
this workflow is FLARE 2.9's ``GlobalModelEval`` (no ``submit_model`` task): each site receives
the final global model, decrypts it and reports aggregate metrics.

Why a subclass: the server keeps the global model as CKKS vectors under its public context, and
FLARE deep-copies a task's data before broadcasting it, which TenSEAL refuses for a vector without
a secret key ("the current context is public ... data corruption risk"). FLARE's
``HECrossSiteModelEval`` meant to serialize the vectors first, but in 2.9 it overrides
``_save_validation_content``, which the base class no longer calls (it became
``_save_dxo_content``), so the validate task fails. Here the loaded model's vectors are turned
into bytes, as ``HEModelShareableGenerator`` does for training tasks; ``HEModelDecryptor`` at the
site turns them back.
"""

from __future__ import annotations

from nvflare.apis.dxo import DXO
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.workflows.global_model_eval import GlobalModelEval
from nvflare.app_opt.he import decomposers
from nvflare.app_opt.he.homomorphic_encrypt import serialize_nested_dict


class HEGlobalModelEval(GlobalModelEval):
    """``GlobalModelEval`` that sends the encrypted global model as serialized ciphertexts.

    Takes ``GlobalModelEval``'s arguments (``model_locator_id`` is required).
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        decomposers.register()

    def _load_validation_content(self, name: str, load_dir: str, fl_ctx: FLContext) -> DXO | None:
        dxo = super()._load_validation_content(name, load_dir, fl_ctx)
        if dxo is not None and isinstance(dxo.data, dict):
            serialize_nested_dict(dxo.data)
        return dxo
