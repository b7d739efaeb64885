"""A site's limits (FLARE-free): the two settings files merged, scopes over limits, every value checked
with the file and key named, and every reason a train request is declined."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from fedhealth.data.site_data import SiteDataError
from fedhealth.policy.site_limits import (
    DEFAULT_SOURCE,
    Limits,
    SiteLimits,
    TrainRequest,
    check_submit_model,
    check_train,
    planned_steps,
    site_limits,
)

OWN, DEFAULT = "local/fedhealth_site.json", "local/fedhealth_site.json.default"
DEFAULTS = asdict(Limits())
# (provisioned default file, hospital's own file, scope, expected values that differ from the
#  defaults, expected sources of those values)
MERGE_CASES = [
    (None, None, "", {}, {}),
    (None, None, "strict", {}, {}),
    (
        {"limits": {"min_batch_size": 32, "max_learning_rate": 0.5}},
        {"limits": {"min_batch_size": 8}},
        "",
        {"min_batch_size": 8, "max_learning_rate": 0.5},
        {"min_batch_size": f"{OWN} limits", "max_learning_rate": f"{DEFAULT} limits"},
    ),
    (
        {"scope_limits": {"strict": {"allow_submit_model": False, "max_learning_rate": 0.5}}},
        {"scope_limits": {"strict": {"max_learning_rate": 0.1}}},
        "strict",
        {"allow_submit_model": False, "max_learning_rate": 0.1},
        {
            "allow_submit_model": f"{DEFAULT} scope_limits.strict",
            "max_learning_rate": f"{OWN} scope_limits.strict",
        },
    ),
    (
        {"scope_limits": {"strict": {"allow_submit_model": False}}},
        {"limits": {"min_batch_size": 32}},
        "standard",  # a scope without an entry gets the limits
        {"min_batch_size": 32},
        {"min_batch_size": f"{OWN} limits"},
    ),
    (
        {"scope_limits": {"strict": {"min_batch_size": 64}}},
        {"limits": {"min_batch_size": 32}},
        "strict",  # the scope's entry applies over the limits, whichever file set them
        {"min_batch_size": 64},
        {"min_batch_size": f"{DEFAULT} scope_limits.strict"},
    ),
    (
        {"limits": {"require_dp": True}, "dp_max_epsilon": 8.0},
        {"dp_max_epsilon": 2},
        "",
        {"require_dp": True},
        {"require_dp": f"{DEFAULT} limits"},
    ),
]
# (which file, its content, the whole error message)
BAD_CASES = [
    (
        OWN,
        {"limits": {"min_batch_size": 0}},
        f"{OWN}: limits.min_batch_size must be a whole number of at least 1, got 0",
    ),
    (
        DEFAULT,
        {"limits": {"min_examples_per_round": 2.5}},
        f"{DEFAULT}: limits.min_examples_per_round must be a whole number of at least 1, got 2.5",
    ),
    (
        OWN,
        {"limits": {"min_batch_size": True}},
        f"{OWN}: limits.min_batch_size must be a whole number of at least 1, got True",
    ),
    (
        OWN,
        {"limits": {"max_learning_rate": -1}},
        f"{OWN}: limits.max_learning_rate must be a positive finite number, got -1",
    ),
    (
        OWN,
        {"limits": {"max_learning_rate": float("nan")}},
        f"{OWN}: limits.max_learning_rate must be a positive finite number, got nan",
    ),
    (
        OWN,
        {"limits": {"allow_submit_model": "no"}},
        f"{OWN}: limits.allow_submit_model must be true or false, got 'no'",
    ),
    (
        DEFAULT,
        {"scope_limits": {"strict": {"require_dp": 1}}},
        f"{DEFAULT}: scope_limits.strict.require_dp must be true or false, got 1",
    ),
    (
        OWN,
        {"limits": {"min_batchsize": 8}},
        f"{OWN}: limits.min_batchsize is not a limit; the limits are {list(DEFAULTS)}",
    ),
    (OWN, {"limits": [16]}, f"{OWN}: 'limits' must be a JSON object of limits"),
    (
        OWN,
        {"scope_limits": {"strict": 3}},
        f"{OWN}: 'scope_limits' must be a JSON object of {{scope name: {{limits}}}}",
    ),
    (OWN, {"dp_max_epsilon": 0}, f"{OWN}: 'dp_max_epsilon' must be a positive number of epsilon, got 0"),
    (
        DEFAULT,
        {"scope_limits": {"strict": {"require_dp": True}}},
        f"{DEFAULT} scope_limits.strict: require_dp needs this site's own 'dp_max_epsilon' (the largest "
        f"epsilon it accepts) in {OWN}",
    ),
]
OK = TrainRequest(batch_size=16, steps=13, n_train=199, learning_rate=0.05)
# (request, limits over the defaults, fragments of each reason in order; [] = may train)
CHECK_CASES = [
    (OK, {}, []),
    (TrainRequest(16, 1, 30, 1.0), {}, []),  # switzerland, one step of 16, at the largest learning rate
    (TrainRequest(16, 2, 30, 0.05), {"min_examples_per_round": 30}, []),  # switzerland, one epoch
    (TrainRequest(16, 2, 12, 0.05), {}, ["an update would mix 12 patients"]),  # fewer rows than a batch
    (TrainRequest(8, 4, 199, 0.05), {}, ["batch_size 8 is below this site's min_batch_size 16"]),
    (TrainRequest(8, 1, 199, 0.05), {"min_batch_size": 8}, ["an update would mix 8 patients"]),
    (TrainRequest(16, 13, 199, -5.0), {}, ["learning rate -5 is above this site's max_learning_rate 1"]),
    (TrainRequest(16, 13, 199, float("nan")), {}, ["learning rate nan is above"]),
    (OK, {"require_dp": True}, ["this site requires DP-SGD (require_dp"]),
    (TrainRequest(16, 13, 199, 0.05, dp_target_epsilon=3.0), {"require_dp": True}, []),
    (
        TrainRequest(16, 13, 199, 0.05, dp_target_epsilon=5.0),
        {"require_dp": True},
        ["target_epsilon 5 is above this site's dp_max_epsilon 4"],
    ),
    (
        TrainRequest(1, 1, 199, 1000.0),
        {},
        ["batch_size 1 is below", "an update would mix 1 patients", "learning rate 1000 is above"],
    ),
]
# (n_train, batch, local steps, epochs, planned steps)
STEP_CASES = [(199, 16, 0, 1, 13), (30, 16, 0, 1, 2), (30, 16, 0, 3, 6), (30, 16, 5, 1, 5), (10, 16, 0, 1, 1)]


def _site(tmp_path: Path, default: dict | None, own: dict | None) -> Path:
    (tmp_path / "local").mkdir(parents=True, exist_ok=True)
    for name, content in (("fedhealth_site.json.default", default), ("fedhealth_site.json", own)):
        if content is not None:
            (tmp_path / "local" / name).write_text(json.dumps(content))
    return tmp_path


@pytest.mark.parametrize(("default", "own", "scope", "values", "sources"), MERGE_CASES)
def test_own_file_over_default_and_scope_over_limits(
    tmp_path: Path, default, own, scope: str, values: dict, sources: dict
) -> None:
    effective = site_limits(_site(tmp_path, default, own)).for_scope(scope)
    assert asdict(effective.values) == {**DEFAULTS, **values}
    assert dict(effective.sources) == {**dict.fromkeys(DEFAULTS, DEFAULT_SOURCE), **sources}
    assert effective.scope == scope


def test_dp_cap_comes_from_the_winning_file(tmp_path: Path) -> None:
    limits = site_limits(_site(tmp_path, {"dp_max_epsilon": 8.0}, {"dp_max_epsilon": 2}))
    assert limits.for_scope("").dp_max_epsilon == 2.0 and limits.for_scope("").dp_source == OWN
    only_default = site_limits(_site(tmp_path / "b", {"dp_max_epsilon": 8.0}, None)).for_scope("x")
    assert (only_default.dp_max_epsilon, only_default.dp_source) == (8.0, DEFAULT)


@pytest.mark.parametrize(("where", "content", "message"), BAD_CASES)
def test_bad_values_name_file_and_key(tmp_path: Path, where: str, content: dict, message: str) -> None:
    site = _site(tmp_path, content if where == DEFAULT else None, content if where == OWN else None)
    with pytest.raises(SiteDataError) as info:
        site_limits(site)
    assert str(info.value) == message


@pytest.mark.parametrize(("request_", "limits", "fragments"), CHECK_CASES)
def test_check_train_gives_every_reason(request_: TrainRequest, limits: dict, fragments: list[str]) -> None:
    layers = [(OWN, {"limits": limits, "dp_max_epsilon": 4.0})]
    reasons = check_train(request_, SiteLimits.from_layers(layers).for_scope(""))
    assert len(reasons) == len(fragments), reasons
    for reason, fragment in zip(reasons, fragments, strict=True):
        assert reason.startswith("site policy: ") and fragment in reason
        assert "local/fedhealth_site.json" in reason  # the setting's file


@pytest.mark.parametrize("allowed", [True, False])
def test_check_submit_model(allowed: bool) -> None:
    limits = SiteLimits.from_layers([(DEFAULT, {"limits": {"allow_submit_model": allowed}})]).for_scope("")
    expected = (
        []
        if allowed
        else [
            "site policy: this site does not send its locally trained model "
            f"(allow_submit_model false, {DEFAULT} limits)"
        ]
    )
    assert check_submit_model(limits) == expected


@pytest.mark.parametrize(("n", "batch", "steps", "epochs", "planned"), STEP_CASES)
def test_planned_steps(n: int, batch: int, steps: int, epochs: int, planned: int) -> None:
    assert planned_steps(n, batch_size=batch, local_steps=steps, local_epochs=epochs) == planned
    assert TrainRequest(batch, planned, n, 0.1).examples == min(n, batch * planned)


def test_to_dict_shows_effective_values(tmp_path: Path) -> None:
    site = _site(
        tmp_path,
        {"scope_limits": {"strict": {"allow_submit_model": False}}},
        {"limits": {"min_batch_size": 32}},
    )
    shown = site_limits(site).to_dict()
    assert shown["limits"] == {**DEFAULTS, "min_batch_size": 32}
    assert shown["scope_limits"] == {
        "strict": {**DEFAULTS, "min_batch_size": 32, "allow_submit_model": False}
    }
    assert shown["dp_max_epsilon"] is None
