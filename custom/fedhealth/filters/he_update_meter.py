"""Server-side record of what each encrypted update cost and which layers travelled in clear.

A ``task_result_filters`` entry on ``train`` at the server. For each site's update it measures the
message as it arrived (FOBS-serialized, ciphertexts included) and the same message with every
layer as clear float32, notes the encrypted and the clear layers, and adds this, with the CKKS
parameters of the server's public context, to the site metrics under ``he``; the run recorder keeps
it per round and the run report's encryption section totals it. It reads nothing it could not
(the server has no secret key) and changes nothing in the update.
"""

from __future__ import annotations

from nvflare.apis.dxo import DXO, from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.filter import Filter
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.app_opt.he import decomposers
from nvflare.fuel.sec.security_content_service import SecurityContentService

from fedhealth import constants as C
from fedhealth.filters.wire import serialized_size
from fedhealth.he.context import HEContextError, check_context, describe_context
from fedhealth.he.measure import layer_split, plain_equivalent


class HEUpdateMeter(Filter):
    """Measure encrypted updates on arrival and record them in the site metrics.

    Args:
        tenseal_context_file: the server's public context (for the CKKS parameters in the report).
    """

    def __init__(self, *, tenseal_context_file: str = C.HE_SERVER_CONTEXT_FILE) -> None:
        super().__init__()
        self.tenseal_context_file = tenseal_context_file
        self._params: dict = {}
        decomposers.register()

    def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
        if event_type == EventType.START_RUN:
            data, status = SecurityContentService.load_content(self.tenseal_context_file)
            try:
                context = check_context(
                    data,
                    path=self.tenseal_context_file,
                    load_status=getattr(status, "value", str(status)),
                    expect_secret_key=False,
                    secure=False,  # HEContextCheck refuses unsigned contexts; here only the parameters
                )
            except HEContextError as exc:
                self.log_warning(fl_ctx, f"no CKKS parameters for the report: {exc}")
                return
            info = describe_context(context)
            self._params = {k: info[k] for k in ("scheme", "poly_modulus_degree", "slots", "scale_bits")}

    def process(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        try:
            dxo = from_shareable(shareable)
        except ValueError:
            return shareable
        if not isinstance(dxo.data, dict):
            return shareable
        sent = serialized_size(shareable)
        plain = Shareable()
        plain.update(shareable)
        DXO(data_kind=dxo.data_kind, data=plain_equivalent(dxo.data), meta=dict(dxo.meta)).update_shareable(
            plain
        )
        facts = {
            **self._params,
            **layer_split(dxo.data),
            C.M_HE_BYTES_SENT: sent,
            C.M_HE_BYTES_PLAIN: serialized_size(plain),
        }
        metrics = dxo.get_meta_prop(C.META_SITE_METRICS, None)
        if isinstance(metrics, dict):
            dxo.set_meta_prop(C.META_SITE_METRICS, {**metrics, C.M_HE: facts})
            return dxo.update_shareable(shareable)
        return shareable
