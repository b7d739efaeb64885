"""EhrAlignmentController with a site that fails or does not answer: left out, or the job ends, by setting.

The controller's broadcasts are replaced by the answers FLARE would collect (``ClientTask`` objects with
each site's real profile, an error reply, or no result); the rest is the controller's own code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from flare_doubles import site_context
from nvflare.apis.client import Client
from nvflare.apis.controller_spec import ClientTask, Task
from nvflare.apis.dxo import DXO, DataKind
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import FLContextKey, ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable, make_reply
from nvflare.apis.signal import Signal

from fedhealth import constants as C
from fedhealth.ehr.mapping import SiteMapping
from fedhealth.tasks.tabular import TabularSite, TabularTask
from fedhealth.workflows.ehr_alignment_controller import EhrAlignmentController

DICTIONARY = {
    "name": "toy",
    "version": 1,
    "target": {"name": "disease"},
    "features": [
        {"name": "age", "kind": "numeric", "unit": "year", "range": [18, 100]},
        {"name": "sex", "kind": "binary"},
    ],
}
MAPPING = SiteMapping.from_dict(
    {"missing_tokens": ["NA"], "target": {"column": "y", "positive": ["1"], "negative": ["0"]}}
)
FAILED = "site c failed task 'ehr_profile': c/train.csv: required feature(s) ['age'] have no column"
# (case, what site c answers, ignore_result_error, the panic or None, the sites in the schema)
CASES = [
    ("error, tolerant", "error", True, None, ["a", "b"]),
    ("error, strict", "error", False, f"feature alignment failed: {FAILED}", None),
    ("no answer, tolerant", "none", True, None, ["a", "b"]),
    ("no answer, strict", "none", False, None, ["a", "b"]),  # silence is not an error: left out
    ("too few sites", "error", True, f"feature alignment failed: {FAILED}", None),
]


class _Alignment(EhrAlignmentController):
    """The controller with FLARE's broadcast replaced by the sites' collected answers."""

    def __init__(self, answers: dict[str, Shareable | None], **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.answers = answers
        self.panics: list[str] = []

    def _broadcast(self, name, data, fl_ctx, abort_signal, *, targets=None, wait_after_min=0):
        sites = targets if targets is not None else sorted(self.answers)
        out = []
        for site in sites:
            ct = ClientTask(Client(site, None), Task(name, data))
            answer = self.answers[site] if name == C.TASK_EHR_PROFILE else make_reply(ReturnCode.OK)
            ct.result = answer
            out.append(ct)
        return out

    def system_panic(self, reason: str, fl_ctx: FLContext) -> None:
        self.panics.append(reason)
        fl_ctx.set_prop(FLContextKey.EVENT_DATA, reason, private=True, sticky=False)
        self.fire_event(EventType.FATAL_SYSTEM_ERROR, fl_ctx)


def _frame(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(30, 80, n).astype(str),
            "sex": rng.integers(0, 2, n).astype(str),
            "y": ["0", "1"] * (n // 2),
        }
    )


def _sites() -> list[TabularSite]:
    task = TabularTask(dictionary=DICTIONARY)
    return [
        task.site_from_frames(name, _frame(i, 40), _frame(10 + i, 10), MAPPING) for i, name in enumerate("ab")
    ]


def _answers(c: str) -> dict[str, Shareable | None]:
    answers: dict[str, Shareable | None] = {}
    for site in _sites():
        profile = site.extra_tasks()[C.TASK_EHR_PROFILE]({"min_cell": 5})
        answers[site.name] = DXO(DataKind.COLLECTION, data=profile).to_shareable()
    if c == "error":
        reply = make_reply(ReturnCode.EXECUTION_EXCEPTION)
        reply.set_header(C.HEADER_ERROR, FAILED)
        answers["c"] = reply
    else:
        answers["c"] = None  # its task ended (timeout, or the site gone) without a result
    return answers


@pytest.mark.parametrize(("case", "c", "tolerant", "panic", "schema_sites"), CASES, ids=[x[0] for x in CASES])
def test_a_failing_or_silent_site(
    tmp_path: Path, case: str, c: str, tolerant: bool, panic: str | None, schema_sites: list[str] | None
) -> None:
    for folder in ("startup", "local"):
        (tmp_path / "server" / folder).mkdir(parents=True)
    fl_ctx = site_context(tmp_path / "server", "server", "job1")
    min_clients = 3 if case == "too few sites" else 2
    controller = _Alignment(
        _answers(c),
        dictionary=DICTIONARY,
        min_clients=min_clients,
        min_sites_with_feature=1,
        ignore_result_error=tolerant,
    )
    controller.control_flow(Signal(), fl_ctx)
    if panic is None:
        assert controller.panics == []
        assert sorted(controller.schema["sites"]) == schema_sites
    else:
        assert controller.panics == [panic]
        assert controller.schema is None
