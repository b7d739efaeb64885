"""The one FLARE stand-in the unit tests share: an engine over a real workspace folder.

FLARE components ask their engine for the workspace and fire events through it; everything else
they touch in these tests is real (``Workspace``, ``FLContext``, DXOs, filters).
"""

from __future__ import annotations

from pathlib import Path

from nvflare.apis.fl_constant import ReservedKey
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


def site_context(kit: Path, site: str, job_id: str) -> FLContext:
    """A site's FLContext over its real workspace folder ``kit``, with the job's run folder made."""
    workspace = Workspace(str(kit), site_name=site)
    Path(workspace.get_run_dir(job_id)).mkdir()
    fl_ctx = FLContext()
    fl_ctx.set_prop(ReservedKey.ENGINE, WorkspaceEngine(workspace), private=True, sticky=True)
    fl_ctx.set_prop(ReservedKey.IDENTITY_NAME, site, private=False, sticky=True)
    fl_ctx.set_prop(ReservedKey.RUN_NUM, job_id, private=False, sticky=True)
    return fl_ctx
