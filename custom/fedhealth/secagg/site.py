"""A site's side of SecAgg+ (FLARE-free): keys, secret shares, masking and unmasking answers.

The protocol of Bonawitz et al. 2017 with the sparse neighbour graph of Bell et al. 2020. The
share-sealing key pair ``c`` lives for a key epoch; the mask key pair ``s`` and the self-mask seed
``b`` are fresh every round (:mod:`fedhealth.secagg.messages`):

1. :meth:`SecAggSite.advertise` (epoch start): a fresh ``c`` key pair, its public half signed with
   the site's provisioned identity.
2. :meth:`SecAggSite.share_keys` (epoch start): every advertisement checked (signature, root CA,
   name, job, epoch); then the first round is dealt (:meth:`SecAggSite.deal_round`): a fresh ``s``
   pair (public half signed), and Shamir shares of ``s_sk`` and of ``b`` among the neighbours, each
   sealed for its receiver.
3. :meth:`SecAggSite.receive` then :meth:`SecAggSite.mask` (every round): the relayed round keys are
   checked (signed by each site's certified identity for this round) and the shares opened (a forged
   or replayed one does not authenticate: refused); the clipped, fixed-point update gets the
   self-mask ``PRG(b)`` and, for each neighbour ``j`` taking part, ``±PRG(s_ij)``, which cancel in
   the sum. A round is masked once.
4. :meth:`SecAggSite.reveal` (every round): for each neighbour that sent its masked update, its
   share of that round's ``b``; for each that dropped out after the deal, its share of that round's
   ``s_sk``; never both for one neighbour and round, nothing if fewer than ``threshold`` remain. The
   next round is dealt with this answer.

Threat model: an honest-but-curious server and up to ``threshold - 1`` colluding sites learn
nothing of a remaining site's update beyond the sum; the server cannot substitute keys (they are
signed). FLARE's mutually authenticated TLS channel authenticates the masked update and the
reveal answer to the server. Not covered: a server that tells different sites different dropout
sets (the consistency round of Bonawitz et al.'s active-security variant is not run).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from fedhealth.secagg import crypto, shamir
from fedhealth.secagg.config import SecAggConfig, neighbour_graph
from fedhealth.secagg.identity import Identity
from fedhealth.secagg.messages import (
    B_SHARE,
    S_SHARE,
    advert_bytes,
    check_adverts,
    check_round_key,
    pair_mask_seed,
    pair_sign,
    round_key_bytes,
    seal_key_info,
    share_aad,
)


@dataclass
class _Epoch:
    number: int
    c_sk: bytes
    adverts: dict[str, dict] = field(default_factory=dict)
    neighbours: list[str] = field(default_factory=list)
    xs: dict[str, int] = field(default_factory=dict)  # site -> its Shamir point
    threshold: int = 0
    held: dict[tuple[str, int, str], bytes] = field(default_factory=dict)  # (kind, round, sender) -> share
    seeds: dict[int, bytes] = field(default_factory=dict)  # round -> own self-mask seed
    s_sk: dict[int, bytes] = field(default_factory=dict)  # round -> own mask key
    s_pk: dict[int, dict[str, bytes]] = field(
        default_factory=dict
    )  # round -> site -> checked mask public key
    contributors: dict[int, list[str]] = field(default_factory=dict)
    revealed: dict[tuple[int, str], str] = field(default_factory=dict)  # (round, peer) -> kind revealed
    masked: set[int] = field(default_factory=set)  # rounds this site masked an update for


class SecAggSite:
    """One site's protocol state for one job.

    Args:
        name: the site's name (its certificate's common name).
        job: the job id (bound into every signature and share).
        config: the site's own SecAgg settings (its job's client config); requests that disagree
            are refused.
        identity: the site's provisioned signing identity.
    """

    def __init__(self, *, name: str, job: str, config: SecAggConfig, identity: Identity) -> None:
        if identity.name != name:
            raise ValueError(f"the identity is for {identity.name!r}, not for site {name!r}.")
        self.name, self.job, self.config, self.identity = name, job, config, identity
        self.epoch: _Epoch | None = None

    # ------------------------------------------------------------------ epoch set-up
    def advertise(self, *, epoch: int, config: dict) -> dict:
        """A fresh share-sealing key pair for ``epoch`` and the signed advertisement of its public half."""
        if config != self.config.as_dict():
            raise ValueError(
                f"the server's SecAgg settings {config} differ from this site's {self.config.as_dict()}; "
                "refused (a job's client and server must agree)"
            )
        c_sk, c_pk = crypto.new_keypair()
        self.epoch = _Epoch(number=int(epoch), c_sk=c_sk)
        data = advert_bytes(job=self.job, epoch=int(epoch), site=self.name, c_pk=c_pk)
        return {
            "site": self.name,
            "job": self.job,
            "epoch": int(epoch),
            "c_pk": c_pk,
            "cert": self.identity.cert_pem,
            "sig": self.identity.sign(data),
        }

    def share_keys(self, *, epoch: int, adverts: dict[str, dict], graph_seed: int, rnd: int) -> dict:
        """Check the roster, find the neighbours, deal round ``rnd`` (:meth:`deal_round`)."""
        ep = self._epoch(epoch)
        if self.name not in adverts or adverts[self.name].get("c_pk") != crypto.public_of(ep.c_sk):
            raise ValueError("the roster does not hold this site's own advertisement of this epoch; refused")
        check_adverts(adverts, job=self.job, epoch=ep.number, root_pem=self.identity.root_pem)
        names = sorted(adverts)
        ep.threshold = self.config.threshold_for(len(names))
        ep.adverts = dict(adverts)
        ep.neighbours = neighbour_graph(names, degree=self.config.degree(len(names)), seed=int(graph_seed))[
            self.name
        ]
        ep.xs = {s: i + 1 for i, s in enumerate(names)}
        return self.deal_round(rnd)

    def deal_round(self, rnd: int) -> dict:
        """Round ``rnd``'s fresh mask key pair (public half signed) and self-mask seed, both Shamir-shared.

        Returns ``{"s_pk", "sig", "s": {neighbour: sealed share}, "b": {neighbour: sealed share}}``.
        """
        ep = self._ready()
        rnd = int(rnd)
        if rnd in ep.seeds or rnd in ep.masked:
            raise ValueError(f"round {rnd} was already dealt at this site; refused")
        s_sk, s_pk = crypto.new_keypair()
        ep.s_sk[rnd], ep.seeds[rnd] = s_sk, os.urandom(crypto.KEY_BYTES)
        data = round_key_bytes(job=self.job, epoch=ep.number, rnd=rnd, site=self.name, s_pk=s_pk)
        return {
            "s_pk": s_pk,
            "sig": self.identity.sign(data),
            S_SHARE: self._deal(S_SHARE, s_sk, rnd),
            B_SHARE: self._deal(B_SHARE, ep.seeds[rnd], rnd),
        }

    def _deal(self, kind: str, secret: bytes, rnd: int) -> dict[str, bytes]:
        ep = self._ready()
        shares = shamir.split(secret, threshold=ep.threshold, xs=[ep.xs[j] for j in ep.neighbours])
        out = {}
        for j in ep.neighbours:
            aad = share_aad(job=self.job, epoch=ep.number, rnd=rnd, kind=kind, sender=self.name, receiver=j)
            out[j] = crypto.seal(self._seal_key(j), shares[ep.xs[j]], aad=aad)
        return out

    # ------------------------------------------------------------------ a round
    def receive(
        self,
        *,
        epoch: int,
        rnd: int,
        contributors: list[str],
        keys: dict[str, dict],
        shares: dict[str, dict[str, bytes]],
    ) -> None:
        """Check round ``rnd``'s relayed keys and open the shares sealed for this site.

        Args:
            keys: ``site -> {"s_pk", "sig"}``, every contributor's mask key of the round.
            shares: ``kind -> sender -> sealed share``.
        """
        ep = self._epoch(epoch)
        self._ready()
        if self.name not in contributors or rnd not in ep.seeds:
            raise ValueError(f"round {rnd}: this site dealt nothing for it; refused")
        unknown = sorted(set(contributors) - set(ep.adverts))
        if unknown:
            raise ValueError(f"round {rnd}: contributors {unknown} are not in this epoch's roster; refused")
        needed = [j for j in ep.neighbours if j in contributors]
        missing = sorted(set(needed) - set(keys))
        if missing:
            raise ValueError(f"round {rnd}: no mask key of {missing}; refused")
        checked = {}
        for j in needed:
            checked[j] = check_round_key(
                keys[j],
                site=j,
                job=self.job,
                epoch=ep.number,
                rnd=rnd,
                advert=ep.adverts[j],
                root_pem=self.identity.root_pem,
            )
        if crypto.public_of(ep.s_sk[rnd]) != keys.get(self.name, {}).get("s_pk"):
            raise ValueError(f"round {rnd}: the relayed mask key of this site is not its own; refused")
        for kind, sealed_by in shares.items():
            if kind not in (S_SHARE, B_SHARE):
                raise ValueError(f"round {rnd}: unknown share kind {kind!r}; refused")
            for sender, sealed in sealed_by.items():
                if sender not in ep.neighbours:
                    raise ValueError(f"round {rnd}: a share from {sender}, not a neighbour; refused")
                aad = share_aad(
                    job=self.job, epoch=ep.number, rnd=rnd, kind=kind, sender=sender, receiver=self.name
                )
                try:
                    ep.held[(kind, rnd, sender)] = crypto.open_sealed(self._seal_key(sender), sealed, aad=aad)
                except ValueError as exc:
                    raise ValueError(f"round {rnd}: the {kind} share from {sender} {exc}; refused") from exc
        ep.s_pk[int(rnd)] = checked
        ep.contributors[int(rnd)] = sorted(contributors)

    def mask(self, encoded: np.ndarray, *, rnd: int) -> np.ndarray:
        """The fixed-point update plus the self-mask and the pairwise masks of round ``rnd``."""
        ep = self._ready()
        if rnd not in ep.contributors or rnd not in ep.seeds:
            raise ValueError(f"round {rnd}: no shares were received for it; refused to mask")
        if rnd in ep.masked:
            raise ValueError(
                f"round {rnd}: an update was already masked for it (two updates under the same masks "
                "would reveal their difference); refused"
            )
        ep.masked.add(int(rnd))
        dtype = self.config.fixed_point.dtype
        out = np.asarray(encoded, dtype).copy()
        out += crypto.prg(ep.seeds[rnd], out.size, dtype)
        for j, s_pk in ep.s_pk[rnd].items():
            seed = pair_mask_seed(ep.s_sk[rnd], s_pk, job=self.job, epoch=ep.number, rnd=rnd)
            p = crypto.prg(seed, out.size, dtype)
            out = out + p if pair_sign(self.name, j) > 0 else out - p
        return self.config.fixed_point.reduce(out)

    def reveal(
        self, *, epoch: int, rnd: int, survivors: list[str], dropped: list[str], deal_next: bool
    ) -> dict:
        """This site's shares for the server's unmasking of round ``rnd``, and the next round's deal."""
        ep = self._epoch(epoch)
        rnd = int(rnd)
        if set(survivors) & set(dropped):
            raise ValueError(
                f"round {rnd}: sites {sorted(set(survivors) & set(dropped))} are both survivors and dropped"
            )
        if len(survivors) < ep.threshold:
            raise ValueError(
                f"round {rnd}: only {len(survivors)} sites sent masked updates, fewer than the threshold "
                f"{ep.threshold}; no share is revealed"
            )
        contributors = set(ep.contributors.get(rnd, []))
        if not (set(survivors) | set(dropped)) <= contributors:
            raise ValueError(f"round {rnd}: the server names sites that were not contributors; refused")
        out: dict = {B_SHARE: {}, S_SHARE: {}}
        for names, kind in ((survivors, B_SHARE), (dropped, S_SHARE)):
            for j in names:
                held = ep.held.get((kind, rnd, j))
                if held is None:
                    continue
                if ep.revealed.get((rnd, j), kind) != kind:  # b and s_sk of one round unmask that round
                    raise ValueError(
                        f"round {rnd}: {j}'s other secret of this round was already revealed; refused"
                    )
                out[kind][j] = held
        ep.revealed.update({(rnd, j): kind for kind in (B_SHARE, S_SHARE) for j in out[kind]})
        out["next"] = self.deal_round(rnd + 1) if deal_next else None
        ep.seeds.pop(rnd, None)
        ep.s_sk.pop(rnd, None)
        return out

    # ------------------------------------------------------------------ keys
    def _epoch(self, epoch: int) -> _Epoch:
        if self.epoch is None or self.epoch.number != int(epoch):
            have = None if self.epoch is None else self.epoch.number
            raise ValueError(
                f"a message of key epoch {epoch}, this site is in epoch {have}: replayed or stale; refused"
            )
        return self.epoch

    def _ready(self) -> _Epoch:
        if self.epoch is None or not self.epoch.adverts:
            raise ValueError("no key epoch is set up at this site (advertise and share_keys come first)")
        return self.epoch

    def _seal_key(self, peer: str) -> bytes:
        ep = self.epoch
        return crypto.agree(ep.c_sk, ep.adverts[peer]["c_pk"], info=seal_key_info(self.job, ep.number))
