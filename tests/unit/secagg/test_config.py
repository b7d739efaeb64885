"""SecAgg+ settings: their checks, the threshold rule (a neighbours' majority) and the neighbour graph."""

from __future__ import annotations

from collections import deque

import pytest

from fedhealth.secagg.config import SecAggConfig, neighbour_graph
from fedhealth.secagg.encoding import FixedPoint

# (settings, the refusal's message)
BAD = [
    ({"neighbors": 3}, "neighbors must be an even number of at least 2 or None, got 3"),
    ({"neighbors": 0}, "neighbors must be an even number of at least 2 or None, got 0"),
    ({"neighbors": -2}, "neighbors must be an even number"),
    ({"threshold": 1}, "threshold must be at least 2 or None, got 1"),
    ({"bits": 8}, "bits must be one of"),
    ({"max_norm": 0.0}, "max_norm must be a positive finite number"),
]
# (neighbors, sites, neighbours per site)
DEGREES = [
    (None, 2, 1),
    (None, 5, 4),
    (None, 16, 15),
    (4, 16, 4),
    (4, 5, 4),
    (4, 4, 3),
    (20, 16, 15),
    (2, 3, 2),
]
# (neighbors, threshold, sites, the threshold or the refusal's message)
THRESHOLDS = [
    (None, None, 2, 1),
    (None, None, 4, 2),
    (None, None, 5, 3),
    (None, None, 16, 8),
    (4, None, 16, 3),
    (6, None, 16, 4),
    (None, 3, 5, 3),
    (None, 4, 5, 4),
    (4, 4, 16, 4),
    (
        None,
        2,
        5,
        r"threshold 2 with 4 neighbours per site: it must be more than half of them and at most all of "
        r"them \(3\.\.4\)",
    ),
    (None, 5, 5, r"threshold 5 with 4 neighbours per site: .* \(3\.\.4\)"),
    (4, 2, 16, "or the server could unmask one site's update"),
    (4, 5, 16, r"threshold 5 with 4 neighbours"),
    (None, 3, 3, r"threshold 3 with 2 neighbours per site: .* \(2\.\.2\)"),
]
# (sites, degree, seed)
GRAPHS = [
    (16, 4, 0),
    (16, 4, 7),
    (16, 6, 1),
    (16, 2, 3),
    (10, 2, 5),
    (7, 4, 2),
    (5, 4, 0),
    (5, 10, 0),
    (3, 2, 0),
    (2, 2, 0),
]


@pytest.mark.parametrize(("changes", "message"), BAD)
def test_settings_refused(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SecAggConfig(**{"max_norm": 1.0, **changes})


def test_defaults_and_plain_data() -> None:
    config = SecAggConfig(max_norm=2.5)
    assert config.fixed_point == FixedPoint(bits=40, max_norm=2.5, max_sites=16, max_weight=10_000.0)
    assert config.as_dict() == {
        "max_norm": 2.5,
        "bits": 40,
        "max_sites": 16,
        "max_weight": 10_000.0,
        "threshold": None,
        "neighbors": None,
    }
    assert SecAggConfig(**config.as_dict()) == config


@pytest.mark.parametrize(("neighbors", "sites", "degree"), DEGREES)
def test_degree(neighbors: int | None, sites: int, degree: int) -> None:
    assert SecAggConfig(max_norm=1.0, neighbors=neighbors).degree(sites) == degree


@pytest.mark.parametrize(("neighbors", "threshold", "sites", "expected"), THRESHOLDS)
def test_threshold_is_a_majority_of_the_neighbours(neighbors, threshold, sites, expected) -> None:
    config = SecAggConfig(max_norm=1.0, neighbors=neighbors, threshold=threshold)
    if isinstance(expected, str):
        with pytest.raises(ValueError, match=expected):
            config.threshold_for(sites)
    else:
        assert config.threshold_for(sites) == expected


def _connected(graph: dict[str, list[str]]) -> bool:
    start = next(iter(graph))
    seen, todo = {start}, deque([start])
    while todo:
        for peer in graph[todo.popleft()]:
            if peer not in seen:
                seen.add(peer)
                todo.append(peer)
    return len(seen) == len(graph)


@pytest.mark.parametrize(("n", "degree", "seed"), GRAPHS)
def test_neighbour_graph(n: int, degree: int, seed: int) -> None:
    sites = [f"site-{i:02d}" for i in range(n, 0, -1)]  # any order in, sorted names out
    graph = neighbour_graph(sites, degree=degree, seed=seed)
    assert sorted(graph) == sorted(sites)
    for site, peers in graph.items():
        assert len(peers) == min(degree, n - 1) == len(set(peers))
        assert site not in peers and peers == sorted(peers)
        assert all(site in graph[peer] for peer in peers)  # j in N(i) iff i in N(j)
    assert _connected(graph)
    if degree >= n - 1:
        assert all(set(peers) == set(sites) - {site} for site, peers in graph.items())
    assert neighbour_graph(list(reversed(sites)), degree=degree, seed=seed) == graph  # the seed decides


def test_the_seed_draws_the_ring() -> None:
    sites = [f"site-{i:02d}" for i in range(1, 17)]
    graphs = [neighbour_graph(sites, degree=4, seed=seed) for seed in range(5)]
    assert len({tuple(tuple(g[s]) for s in sites) for g in graphs}) == 5
