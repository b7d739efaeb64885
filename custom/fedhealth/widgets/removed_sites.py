"""Server widget: participants removed from the federation may not register again.

FLARE 2.9 has no certificate revocation: a removed hospital's certificate stays valid until it
expires (360 days from provisioning), so mTLS alone would let its kit back in. This widget, in the
server's ``local/resources.json(.default)`` components, refuses the registration of every named
participant (site or admin): on ``CLIENT_REGISTER_RECEIVED`` it raises FLARE's
``NotAuthenticated``, which the server turns into a refused login. The server reads the file when
it starts: restart it after adding a name.
"""

from __future__ import annotations

from nvflare.apis.event_type import EventType
from nvflare.apis.fl_component import FLComponent
from nvflare.apis.fl_context import FLContext
from nvflare.apis.fl_exception import NotAuthenticated


class RemovedSites(FLComponent):
    """Refuses the named participants when they try to register with the server.

    Args:
        sites: participant names (sites or admins) removed from the federation.
    """

    def __init__(self, sites: list[str]) -> None:
        super().__init__()
        if not isinstance(sites, list) or not all(isinstance(s, str) and s for s in sites):
            raise ValueError(f"RemovedSites needs a list of participant names, got {sites!r}.")
        self.sites = frozenset(sites)

    def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
        if event_type != EventType.CLIENT_REGISTER_RECEIVED:
            return
        peer = fl_ctx.get_peer_context()
        name = peer.get_identity_name() if peer else ""
        if name in self.sites:
            self.log_warning(fl_ctx, f"refused {name}: removed from the federation (RemovedSites)")
            raise NotAuthenticated(f"{name} was removed from the federation")
