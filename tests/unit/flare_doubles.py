"""The one FLARE stand-in the unit tests share: an engine over a real workspace folder.

FLARE components ask their engine for the workspace and fire events through it; everything else
they touch in these tests is real (``Workspace``, ``FLContext``, DXOs, filters).
"""

from __future__ import annotations

from nvflare.apis.fl_context import FLContext
from nvflare.apis.workspace import Workspace


class WorkspaceEngine:
    """Stand-in for FLARE's engine: a real workspace, and a record of the events fired."""

    def __init__(self, workspace: Workspace) -> None:
        self._workspace = workspace
        self.events: list[str] = []

    def get_workspace(self) -> Workspace:
        return self._workspace

    def fire_event(self, event_type: str, fl_ctx: FLContext) -> None:
        self.events.append(event_type)
