"""Clustered federated learning: group sites whose updates point the same way (Sattler et al. 2021,
"Clustered Federated Learning: Model-Agnostic Distributed Multitask Optimization Under Privacy
Constraints"), or by non-PHI site metadata, FLARE-free.

Sattler et al. compare the sites' weight updates by cosine similarity and split a cluster in two
so that the largest similarity across the split is as small as possible, when the cluster's mean
update is small but some sites' updates are large (the federation sits at a stationary point of
the average loss that is not one for every site). :func:`bipartition` does that split with
complete linkage; :func:`should_split` is their criterion; :func:`metadata_clusters` groups sites
by fields a hospital declares in its site config (scanner, hospital type), no data involved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def flatten(update: Mapping[str, np.ndarray]) -> np.ndarray:
    """One vector from a ``{name: array}`` update, in sorted-name order."""
    return np.concatenate([np.asarray(update[k], dtype="float64").ravel() for k in sorted(update)])


def cosine_similarity(updates: Sequence[Mapping[str, np.ndarray]]) -> np.ndarray:
    """The ``(n, n)`` matrix of cosine similarities between the sites' updates (0 for a zero update)."""
    if not updates:
        raise ValueError("cosine_similarity needs at least one update.")
    vectors = np.stack([flatten(u) for u in updates])
    norms = np.linalg.norm(vectors, axis=1)
    safe = np.where(norms > 0, norms, 1.0)
    unit = vectors / safe[:, None]
    sim = unit @ unit.T
    sim[norms == 0, :] = 0.0
    sim[:, norms == 0] = 0.0
    return np.clip(sim, -1.0, 1.0)


def bipartition(similarity: np.ndarray) -> tuple[list[int], list[int]]:
    """Split the sites in two by complete-linkage agglomeration on the cosine similarities.

    Merges the two groups whose least similar pair is most similar until two groups are left:
    Sattler et al.'s split, which keeps the largest cross-group similarity small.

    Raises:
        ValueError: when the matrix is not square or has fewer than two sites.
    """
    sim = np.asarray(similarity, dtype="float64")
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1] or sim.shape[0] < 2:
        raise ValueError(f"Need a square similarity matrix of at least two sites, got shape {sim.shape}.")
    groups = [[i] for i in range(sim.shape[0])]
    while len(groups) > 2:
        best, pair = -np.inf, (0, 1)
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                link = sim[np.ix_(groups[a], groups[b])].min()
                if link > best:
                    best, pair = link, (a, b)
        a, b = pair
        groups[a] = sorted(groups[a] + groups[b])
        del groups[b]
    return sorted(groups, key=min)[0], sorted(groups, key=min)[1]


def cross_similarity(similarity: np.ndarray, first: Sequence[int], second: Sequence[int]) -> float:
    """The largest cosine similarity between a site of ``first`` and one of ``second``."""
    return float(np.asarray(similarity)[np.ix_(list(first), list(second))].max())


def split_if_apart(
    updates: Sequence[Mapping[str, np.ndarray]], *, threshold: float
) -> tuple[list[int], list[int]] | None:
    """The two groups of :func:`bipartition` when their largest cross similarity is below ``threshold``.

    Returns None (keep the cluster) for fewer than two updates or groups that still point alike.
    """
    if len(updates) < 2:
        return None
    sim = cosine_similarity(updates)
    first, second = bipartition(sim)
    return (first, second) if cross_similarity(sim, first, second) < threshold else None


def should_split(
    updates: Sequence[Mapping[str, np.ndarray]],
    weights: Sequence[float],
    *,
    eps_mean: float,
    eps_max: float,
) -> bool:
    """Sattler et al.'s split test: ``||mean update|| < eps_mean`` and ``max ||update|| > eps_max``."""
    if len(updates) < 2:
        return False
    vectors = np.stack([flatten(u) for u in updates])
    w = np.asarray(weights, dtype="float64")
    mean = (w[:, None] * vectors).sum(axis=0) / w.sum()
    return bool(np.linalg.norm(mean) < eps_mean and np.linalg.norm(vectors, axis=1).max() > eps_max)


def metadata_clusters(metadata: Mapping[str, Mapping[str, object]], keys: Sequence[str]) -> list[list[str]]:
    """Group site names by equal values of the given metadata fields (e.g. ``["scanner"]``).

    Raises:
        ValueError: when no key is given or a site does not declare one of them.
    """
    if not keys:
        raise ValueError("metadata_clusters needs at least one metadata key to group by.")
    groups: dict[tuple, list[str]] = {}
    for site, fields in metadata.items():
        missing = [k for k in keys if k not in fields]
        if missing:
            raise ValueError(f"Site {site!r} does not declare metadata {missing} in its site config.")
        groups.setdefault(tuple(str(fields[k]) for k in keys), []).append(site)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: g[0])
