"""A site's declared non-PHI metadata (clustered FL) travels with its updates, and only if declared."""

from __future__ import annotations

import pytest
from nvflare.apis.dxo import from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import ReturnCode
from site_args import heart
from test_heart_executor import _context, _kit, _model_task, _run, _scaling

from fedhealth import constants as C
from fedhealth.executors.site_executor import SiteExecutor

# (site settings, metadata expected in the train reply's meta)
CASES = [
    ({}, None),
    (
        {C.SITE_METADATA_KEY: {"hospital_type": "teaching", "scanner": "ge"}},
        {"hospital_type": "teaching", "scanner": "ge"},
    ),
    ({C.SITE_METADATA_KEY: {}}, None),
]


@pytest.mark.parametrize(("settings", "expected"), CASES)
def test_declared_metadata_goes_with_the_update(tmp_path, heart_splits, settings, expected):
    fl_ctx = _context(_kit(tmp_path, "cleveland", heart_splits, settings=settings), "cleveland")
    executor = SiteExecutor(**heart())
    executor.handle_event(EventType.START_RUN, fl_ctx)
    _scaling(executor, fl_ctx)
    reply = _run(executor, C.TASK_TRAIN, fl_ctx, _model_task())
    assert reply.get_return_code(ReturnCode.OK) == ReturnCode.OK
    assert from_shareable(reply).get_meta_prop(C.META_SITE_METADATA) == expected


def test_metadata_that_is_not_an_object_fails_every_task_naming_the_key(tmp_path, heart_splits):
    settings = {C.SITE_METADATA_KEY: "teaching hospital"}
    fl_ctx = _context(_kit(tmp_path, "cleveland", heart_splits, settings=settings), "cleveland")
    executor = SiteExecutor(**heart())
    executor.handle_event(EventType.START_RUN, fl_ctx)
    reply = _run(executor, C.TASK_FED_STATS, fl_ctx)
    assert reply.get_return_code() == ReturnCode.EXECUTION_EXCEPTION
    assert f"'{C.SITE_METADATA_KEY}' must be a JSON object" in reply.get_header(C.HEADER_ERROR)
