"""Link profiles and labs from config: the shipped file, and bad input named by file, entry and field."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from fedhealth_tools.netlab.linkemu import Impairment
from fedhealth_tools.netlab.profiles import (
    DEFAULT_CONFIG,
    LinkProfile,
    NetlabConfigError,
    load_config,
    site_profiles,
)

SITES = ("cleveland", "hungary", "switzerland", "va_long_beach")

BAD_PROFILES = [
    ({"delay_ms": 5}, "rate_mbit is required"),
    ({"rate_mbit": 0}, "rate_mbit must be positive, got 0.0"),
    ({"rate_mbit": 10, "delay_ms": -1}, "must be >= 0"),
    ({"rate_mbit": 10, "delay_ms": 5, "jitter_ms": 6}, "jitter_ms (6.0) cannot exceed delay_ms (5.0)"),
    ({"rate_mbit": 10, "loss": 1.5}, "loss is a fraction from 0 to 1, got 1.5"),
    ({"rate_mbit": 10, "lossy": 0.1}, "unknown field(s) lossy"),
]


def test_the_shipped_labs_give_the_rural_site_its_profile() -> None:
    profiles, labs = load_config(DEFAULT_CONFIG)
    assert profiles["rural"] == LinkProfile(rate_mbit=20, delay_ms=60, jitter_ms=5, loss=0.005)
    assert profiles["regional"] == LinkProfile(rate_mbit=50, delay_ms=30, jitter_ms=3)
    chosen = site_profiles(labs["rural"], profiles, SITES)
    assert {site: name for site, (name, _) in chosen.items()} == {
        "cleveland": "regional",
        "hungary": "regional",
        "switzerland": "regional",
        "va_long_beach": "rural",
    }
    assert {name for name, _ in site_profiles(labs["fast"], profiles, SITES).values()} == {"campus"}


@pytest.mark.parametrize(("entry", "message"), BAD_PROFILES, ids=[m for _, m in BAD_PROFILES])
def test_a_bad_profile_names_the_file_the_entry_and_the_problem(
    tmp_path: Path, entry: dict, message: str
) -> None:
    path = tmp_path / "netlab.json"
    path.write_text(json.dumps({"profiles": {"slow": entry}, "labs": {}}))
    with pytest.raises(NetlabConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: profiles.slow: ")
    assert message in str(err.value)


def test_a_lab_naming_an_unknown_profile_or_site_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "netlab.json"
    profiles = {"campus": {"rate_mbit": 1000}}
    path.write_text(
        json.dumps({"profiles": profiles, "labs": {"x": {"server": "campus", "default_site": "dsl"}}})
    )
    with pytest.raises(NetlabConfigError, match=r"labs\.x: profile 'dsl' is not in profiles \(campus\)"):
        load_config(path)
    path.write_text(
        json.dumps(
            {
                "profiles": profiles,
                "labs": {"x": {"server": "campus", "default_site": "campus", "sites": {"mars": "campus"}}},
            }
        )
    )
    _, labs = load_config(path)
    with pytest.raises(NetlabConfigError, match="lab x names sites the project does not have: mars"):
        site_profiles(labs["x"], load_config(path)[0], SITES)


def test_the_token_bucket_burst_is_ten_ms_of_traffic_and_at_least_four_frames() -> None:
    assert LinkProfile(rate_mbit=1000).tbf_burst_bytes == 1_250_000
    assert LinkProfile(rate_mbit=20).tbf_burst_bytes == 25_000
    assert LinkProfile(rate_mbit=1).tbf_burst_bytes == 6000


def test_jittered_delays_stay_in_bounds_and_never_reorder_frames() -> None:
    impairment = Impairment(delay_ms=60, jitter_ms=5)
    rng = random.Random(0)
    last, dues = 0.0, []
    for i in range(2000):
        now = i * 0.02  # 50 frames a second: further apart than the jitter
        last = impairment.due(now, last, rng)
        dues.append((now, last))
    assert all(b[1] >= a[1] for a, b in zip(dues, dues[1:], strict=False))  # order kept
    delays = [due - now for now, due in dues]
    assert min(delays) >= 0.055 - 1e-9 and max(delays) <= 0.065 + 1e-9
    assert max(delays) - min(delays) > 0.009  # the jitter is there
    # back to back, a frame never overtakes the one before it: it waits for it instead
    last, burst = 0.0, []
    for _ in range(50):
        last = impairment.due(1.0, last, rng)
        burst.append(last)
    assert burst == sorted(burst)
    assert sum(b == a for a, b in zip(burst, burst[1:], strict=False)) > 10  # waited for the one ahead


def test_a_control_line_changes_the_impairment_in_place() -> None:
    impairment = Impairment(delay_ms=60, jitter_ms=5, loss=0.005)
    impairment.update({"loss": 1.0})
    assert (impairment.delay_ms, impairment.jitter_ms, impairment.loss) == (60, 5, 1.0)
    assert Impairment().due(10.0, 0.0, random.Random(0)) == 10.0  # no delay: due now
