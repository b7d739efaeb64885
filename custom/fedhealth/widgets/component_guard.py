"""Site widget: refuse job components that are not component classes, before FLARE builds them.

Installed by provisioning in every kit's ``local/resources.json.default`` ``components`` (server
and every site). For each component of a job (nested ones such as a persistor's ``model``
included) FLARE 2.9 first checks the site's class allow-list, then fires ``BEFORE_BUILD_COMPONENT``
to the site's own components with the config in ``FLContextKey.COMPONENT_CONFIG``
(``nvflare/private/fed/utils/fed_utils.py::authorize_build_component``). This widget runs
:func:`fedhealth.policy.component_check.check_component` on it (a nested component's class is
resolved when FLARE asks about that component, after the allow-list; a nested
``config_type: dict`` config, which FLARE never asks about, is refused) and, to refuse, sets
``FLContextKey.COMPONENT_BUILD_ERROR``: FLARE then raises ``ComponentNotAuthorized`` with that text
and the job's app does not start at this site. The refusal is logged at ERROR level in the job's
log at the site, naming the class path, where it is in the config and why (never argument values).

It applies to every job, BYOC or not (FLARE skips its allow-list for BYOC jobs).
"""

from __future__ import annotations

from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import FLContextKey
from nvflare.apis.fl_context import FLContext
from nvflare.widgets.widget import Widget

from fedhealth.policy.component_check import check_component

PREFIX = "ComponentGuard refused"


class ComponentGuard(Widget):
    """Refuses a job component whose path is not a component class or whose args are unsafe."""

    def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
        if event_type != EventType.BEFORE_BUILD_COMPONENT:
            return
        # Nested components are asked about on their own, after the allow-list: not imported here.
        reasons = check_component(fl_ctx.get_prop(FLContextKey.COMPONENT_CONFIG), resolve_nested=False)
        if not reasons:
            return
        node = fl_ctx.get_prop(FLContextKey.COMPONENT_NODE)
        where = node.path() if node is not None and hasattr(node, "path") else ""
        message = f"{PREFIX} the component at {where or 'the job config'!r}: " + "; ".join(reasons)
        self.log_error(fl_ctx, message, fire_event=False)
        fl_ctx.set_prop(FLContextKey.COMPONENT_BUILD_ERROR, message, private=True, sticky=False)
