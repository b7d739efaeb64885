"""RemovedSites refuses exactly the named participants at registration."""

from __future__ import annotations

import pytest
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import ReservedKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.fl_exception import NotAuthenticated

from fedhealth.widgets.removed_sites import RemovedSites

# (registering participant, event, refused)
CASES = [
    ("old_hospital", EventType.CLIENT_REGISTER_RECEIVED, True),
    ("cleveland", EventType.CLIENT_REGISTER_RECEIVED, False),
    ("old_hospital", EventType.START_RUN, False),
]


def _ctx(name: str) -> FLContext:
    peer = FLContext()
    peer.set_prop(ReservedKey.IDENTITY_NAME, name, private=False, sticky=False)
    ctx = FLContext()
    ctx.set_peer_context(peer)
    return ctx


@pytest.mark.parametrize(("name", "event", "refused"), CASES)
def test_refuses_only_removed_sites_at_registration(name: str, event: str, refused: bool) -> None:
    widget = RemovedSites(sites=["old_hospital"])
    if refused:
        with pytest.raises(NotAuthenticated, match="old_hospital was removed from the federation"):
            widget.handle_event(event, _ctx(name))
    else:
        widget.handle_event(event, _ctx(name))


@pytest.mark.parametrize("sites", ["old_hospital", [""], [3]])
def test_bad_names_are_refused(sites) -> None:
    with pytest.raises(ValueError, match="list of participant names"):
        RemovedSites(sites=sites)
