"""The server's side of SecAgg+ (FLARE-free): relay keys and shares, sum masked updates, unmask the sum.

The server never holds a single site's unmasked update: it adds the masked vectors, then removes
the masks of the sum from the secrets ``threshold`` neighbours reveal (each survivor's self-mask
seed; each dropped site's mask key, with which it recomputes that site's pairwise masks with the
survivors). What it learns is ``Σ r_i x_i`` and ``Σ r_i`` over the survivors (the weighted sum
and the summed weight ratios, :mod:`fedhealth.secagg.encoding`).

A round fails (:class:`SecAggRoundError`, no model change) when fewer than ``threshold`` sites sent
masked updates, when a secret cannot be recovered from the answers, when recovered secrets are
inconsistent (a forged share), or when the unmasked sum is above what clipped updates can add up to.
A site that drops out in any round is recovered: the mask key the server reconstructs for it was
used in that round only (mask keys are fresh every round, :mod:`fedhealth.secagg.messages`).
After a dropout or a failed round :attr:`SecAggServer.needs_setup` is set: the next round starts a
new key epoch, which lets a returning site back in.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import numpy as np

from fedhealth.privacy.update_guard import sum_within_bound
from fedhealth.secagg import crypto, shamir
from fedhealth.secagg.config import SecAggConfig, neighbour_graph
from fedhealth.secagg.messages import (
    B_SHARE,
    S_SHARE,
    check_adverts,
    check_round_key,
    pair_mask_seed,
    pair_sign,
)


class SecAggRoundError(RuntimeError):
    """A round that cannot be unmasked; the message says why, and the global model is not changed."""


class SecAggSetupError(SecAggRoundError):
    """Too few sites with valid keys to run a round at all (the job cannot go on)."""


@dataclass
class _Round:
    epoch: int = 0
    contributors: list[str] = field(default_factory=list)
    keys: dict[str, dict] = field(default_factory=dict)  # sender -> {"s_pk", "sig"} (checked)
    deals: dict[str, dict[str, dict[str, bytes]]] = field(
        default_factory=dict
    )  # sender -> kind -> receiver -> sealed
    masked: dict[str, np.ndarray] = field(default_factory=dict)
    reveals: dict[str, dict] = field(default_factory=dict)


class SecAggServer:
    """The server's protocol state for one job.

    Args:
        job: the job id.
        config: the job's SecAgg settings (sent to the sites, which check them against their own).
        root_pem: the project's root CA certificate, to check the sites' keys.
        min_sites: fewer sites with valid keys fail the set-up.
    """

    def __init__(self, *, job: str, config: SecAggConfig, root_pem: bytes, min_sites: int = 2) -> None:
        self.job, self.config, self.root_pem, self.min_sites = job, config, root_pem, int(min_sites)
        self.epoch = 0
        self.adverts: dict[str, dict] = {}
        self.graph: dict[str, list[str]] = {}
        self.threshold = 0
        self.needs_setup = True
        self.rounds: dict[int, _Round] = {}
        self.refused: dict[str, str] = {}  # site -> why its last deal was refused

    def _fail(self, message: str) -> SecAggRoundError:
        """A round that cannot be unmasked: the next one starts a new key epoch."""
        self.needs_setup = True
        return SecAggRoundError(message)

    # ------------------------------------------------------------------ epoch set-up
    def setup_request(self) -> dict:
        """Start a new key epoch: what the advertise task carries."""
        self.epoch += 1
        self.adverts, self.graph = {}, {}
        return {"epoch": self.epoch, "config": self.config.as_dict()}

    def accept_adverts(self, adverts: dict[str, dict], *, rnd: int) -> tuple[dict, dict[str, str]]:
        """Check the advertisements; the share-keys request and the refused sites with their reasons."""
        refused, good = {}, {}
        for name, ad in adverts.items():
            try:
                check_adverts({name: ad}, job=self.job, epoch=self.epoch, root_pem=self.root_pem)
                good[name] = ad
            except (ValueError, KeyError, TypeError) as exc:
                refused[name] = str(exc)
        if len(good) < self.min_sites:
            raise SecAggSetupError(
                f"key epoch {self.epoch}: {len(good)} sites advertised valid keys, {self.min_sites} needed"
                + (f"; refused: {refused}" if refused else "")
            )
        self.threshold = self.config.threshold_for(len(good))
        seed = secrets.randbits(63)
        self.adverts = good
        self.graph = neighbour_graph(sorted(good), degree=self.config.degree(len(good)), seed=seed)
        request = {"epoch": self.epoch, "adverts": good, "graph_seed": seed, "rnd": int(rnd)}
        return request, refused

    def accept_key_deals(self, rnd: int, deals: dict[str, dict]) -> list[str]:
        """The share-keys answers (each site's deal of round ``rnd``); returns the round's contributors."""
        self.needs_setup = False
        return self.accept_deals(rnd, deals)

    def accept_deals(self, rnd: int, deals: dict[str, dict]) -> list[str]:
        """Round ``rnd``'s deals (``sender -> {"s_pk", "sig", "s", "b"}``); returns its contributors.

        A deal whose round key is not signed by its sender's certified identity for this round is
        refused (:attr:`refused` says why) and its sender takes no part in the round.
        """
        state = self.rounds.setdefault(int(rnd), _Round())
        state.epoch = self.epoch
        state.keys, state.deals, self.refused = {}, {}, {}
        for sender, deal in deals.items():
            if sender not in self.adverts:
                continue
            try:
                check_round_key(
                    deal,
                    site=sender,
                    job=self.job,
                    epoch=self.epoch,
                    rnd=int(rnd),
                    advert=self.adverts[sender],
                    root_pem=self.root_pem,
                )
            except (ValueError, KeyError, TypeError) as exc:
                self.refused[sender] = str(exc)
                continue
            state.keys[sender] = {"s_pk": deal["s_pk"], "sig": deal["sig"]}
            state.deals[sender] = {B_SHARE: dict(deal[B_SHARE]), S_SHARE: dict(deal[S_SHARE])}
        state.contributors = sorted(state.deals)
        return state.contributors

    # ------------------------------------------------------------------ a round
    def routed(self, site: str, rnd: int) -> dict:
        """What the train task carries to ``site``: the round's keys and contributors, its sealed shares."""
        state = self.rounds[int(rnd)]
        shares = {
            kind: {s: d[kind][site] for s, d in state.deals.items() if site in d[kind]}
            for kind in (B_SHARE, S_SHARE)
        }
        return {
            "epoch": self.epoch,
            "rnd": int(rnd),
            "contributors": list(state.contributors),
            "keys": {k: dict(v) for k, v in state.keys.items()},
            "shares": shares,
        }

    def accept_masked(self, rnd: int, site: str, vector: np.ndarray, *, size: int) -> None:
        """A site's masked update (``size`` ring elements: the model's values and the weight)."""
        state = self.rounds[int(rnd)]
        dtype = self.config.fixed_point.dtype
        array = np.asarray(vector)
        if site not in state.contributors:
            raise ValueError(f"round {rnd}: {site} dealt nothing for this round; its update is refused")
        if array.dtype != dtype or array.shape != (size,):
            raise ValueError(
                f"round {rnd}: {site}'s masked update is {array.dtype} {array.shape}, "
                f"expected {np.dtype(dtype)} ({size},)"
            )
        state.masked[site] = array

    def unmask_request(self, rnd: int, *, deal_next: bool) -> dict:
        """What the unmask task carries: who sent masked updates, who dropped out after the deal."""
        state = self.rounds[int(rnd)]
        survivors = sorted(state.masked)
        dropped = sorted(set(state.contributors) - set(survivors))
        if len(survivors) < self.threshold:
            raise self._fail(
                f"round {rnd}: {len(survivors)} sites sent masked updates ({survivors}), fewer than the "
                f"threshold {self.threshold}; the round cannot be unmasked and the global model is unchanged"
            )
        return {
            "epoch": self.epoch,
            "rnd": int(rnd),
            "survivors": survivors,
            "dropped": dropped,
            "deal_next": bool(deal_next),
        }

    def accept_reveals(self, rnd: int, reveals: dict[str, dict]) -> None:
        """The unmask answers (``site -> {"b": ..., "s": ..., "next": deal of the next round or None}``)."""
        state = self.rounds[int(rnd)]
        state.reveals = {s: r for s, r in reveals.items() if s in state.masked}
        nxt = {s: r["next"] for s, r in state.reveals.items() if r.get("next")}
        if nxt:
            self.accept_deals(rnd + 1, nxt)

    def _recover(self, rnd: int, kind: str, site: str) -> bytes:
        state = self.rounds[int(rnd)]
        xs = {s: i + 1 for i, s in enumerate(sorted(self.adverts))}
        shares = {xs[h]: r[kind][site] for h, r in state.reveals.items() if site in r.get(kind, {})}
        if len(shares) < self.threshold:
            what = "self-mask seed" if kind == B_SHARE else "mask key (it dropped out)"
            raise self._fail(
                f"round {rnd}: {len(shares)} shares of {site}'s {what} arrived, {self.threshold} needed; the "
                "round cannot be unmasked and the global model is unchanged"
            )
        points = sorted(shares)
        try:
            secret = shamir.combine({x: shares[x] for x in points[: self.threshold]})
            check = shamir.combine({x: shares[x] for x in points[-self.threshold :]})
        except ValueError as exc:
            raise self._fail(f"round {rnd}: the shares of {site}'s secret are invalid ({exc})") from exc
        if secret != check:
            raise self._fail(f"round {rnd}: the shares of {site}'s secret disagree (a share is forged)")
        if kind == S_SHARE and crypto.public_of(secret) != state.keys[site]["s_pk"]:
            raise self._fail(f"round {rnd}: the recovered mask key of {site} is not the one it signed")
        return secret

    def aggregate(self, rnd: int) -> tuple[np.ndarray, float, list[str]]:
        """The unmasked round: ``(Σ r_i x_i, Σ r_i, survivors)``, or :class:`SecAggRoundError`."""
        state = self.rounds[int(rnd)]
        fp = self.config.fixed_point
        survivors = sorted(state.masked)
        if not survivors:
            raise self._fail(f"round {rnd}: no masked update arrived")
        total = np.zeros_like(state.masked[survivors[0]])
        for vector in state.masked.values():
            total += vector
        for site in survivors:
            total -= crypto.prg(self._recover(rnd, B_SHARE, site), total.size, fp.dtype)
        for gone in sorted(set(state.contributors) - set(survivors)):
            s_sk = self._recover(rnd, S_SHARE, gone)
            for peer in self.graph[gone]:
                if peer in state.masked:
                    seed = pair_mask_seed(
                        s_sk, state.keys[peer]["s_pk"], job=self.job, epoch=state.epoch, rnd=rnd
                    )
                    p = crypto.prg(seed, total.size, fp.dtype)
                    total = total - p if pair_sign(peer, gone) > 0 else total + p
        values, weight = fp.decode(total)
        if len(survivors) < len(state.contributors):
            self.needs_setup = True  # a new key epoch lets the dropped sites back in when they return
        norm = float(np.linalg.norm(values))
        rounding = fp.max_error(len(survivors)) * np.sqrt(values.size)  # the fixed-point error's largest norm
        honest = sum_within_bound(max(norm - rounding, 0.0), weight_sum=weight, max_norm=fp.max_norm)
        if not (0 < weight <= len(survivors) * (1 + 1e-9)) or not honest:
            raise self._fail(
                f"round {rnd}: the unmasked sum has norm {norm:.4g} for summed weight {weight:.4g}, "
                f"above what updates clipped to {fp.max_norm:g} can reach; refused, the global model is "
                "unchanged"
            )
        return values, weight, survivors
