"""FedBuff on the simulated clock: its first version is FedAvg's first round; a slow site's updates
arrive late, stale by the versions the others made meanwhile."""

from __future__ import annotations

import numpy as np
import pytest

from fedhealth.algorithms.fedbuff import FedBuffConfig
from fedhealth.models.state import to_numpy
from fedhealth.models.tabular import TabularNet
from fedhealth.tasks.heart import HeartTask
from fedhealth_tools.federation.async_loop import run_fedbuff_loop
from fedhealth_tools.federation.loop import run_loop

LOCAL = {"batch_size": 16, "local_epochs": 1}
SEEDS = [1000 + i for i in range(4)]
SLOW = "va_long_beach"


def _sites(heart_tables: dict):
    task = HeartTask()
    return task, [task.site_from_tables(n, tr, te) for n, (tr, te) in heart_tables.items()]


def _fedbuff(heart_tables: dict, durations: dict | None = None, **kwargs):
    task, sites = _sites(heart_tables)
    durations = durations or {s.name: 1.0 for s in sites}
    config = kwargs.pop("config")
    return run_fedbuff_loop(
        task,
        sites,
        TabularNet(in_features=14, seed=0),
        durations=durations,
        config=config,
        lr=0.1,
        local=LOCAL,
        seeds=SEEDS,
        **kwargs,
    )


def test_a_full_fresh_buffer_is_a_fedavg_round(heart_tables):
    result = _fedbuff(heart_tables, num_versions=1, config=FedBuffConfig(buffer_size=4))
    task, sites = _sites(heart_tables)
    fedavg = run_loop(
        task, sites, TabularNet(in_features=14, seed=0), rounds=1, lr=0.1, local=LOCAL, seeds=SEEDS
    )
    got, want = to_numpy(result.model), to_numpy(fedavg.model)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-6)
    assert result.times == [1.0]


def test_a_slow_site_is_stale_by_the_versions_the_others_made(heart_tables):
    durations = {name: (5.0 if name == SLOW else 1.0) for name in heart_tables}
    result = _fedbuff(heart_tables, durations, num_versions=9, config=FedBuffConfig(buffer_size=3))
    assert result.times == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]  # the three fast sites: one a unit
    slow = [
        (v.version, u.start_version, u.staleness)
        for v in result.core.history
        for u in v.updates
        if u.site == SLOW
    ]
    # sent version 0 at time 0, it arrives at 5, when the others have made version 4, and goes into
    # version 5; sent version 4 then, it would arrive at 10, after the job's 9 versions
    assert slow == [(5, 0, 4)]
    weights = [u.staleness_weight for v in result.core.history for u in v.updates if u.site == SLOW]
    assert weights == pytest.approx([5**-0.5])
    assert result.core.outstanding()[SLOW] == 4


def test_every_site_needs_a_duration(heart_tables):
    with pytest.raises(ValueError, match=r"missing \['va_long_beach'\]"):
        _fedbuff(
            heart_tables,
            {n: 1.0 for n in heart_tables if n != SLOW},
            num_versions=1,
            config=FedBuffConfig(buffer_size=1),
        )
