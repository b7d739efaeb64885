"""A site's side of SecAgg+ (FLARE-free): keys, secret shares, masking and unmasking answers.

The protocol of Bonawitz et al. 2017 with the sparse neighbour graph of Bell et al. 2020, in four
messages a round; keys live for a key epoch (until a dropout reveals a site's mask key):

1. :meth:`SecAggSite.advertise` (epoch start): two fresh X25519 key pairs, one to encrypt shares
   (``c``), one to agree masks (``s``); the public halves signed with the site's provisioned identity.
2. :meth:`SecAggSite.share_keys` (epoch start): every neighbour's advertisement checked (signature,
   root CA, name, job, epoch); the mask key ``s_sk`` and the first round's self-mask seed ``b`` are
   Shamir-shared among the neighbours, each share sealed for its receiver (AES-GCM under the pair's
   X25519 key, bound to job, epoch, round and kind).
3. :meth:`SecAggSite.receive` then :meth:`SecAggSite.mask` (every round): the shares the server
   relays are opened (a forged or replayed one does not authenticate and the round is refused); the
   clipped, fixed-point update gets the self-mask ``PRG(b)`` and, for each neighbour ``j`` taking
   part, ``±PRG(s_ij)``, which cancel in the sum.
4. :meth:`SecAggSite.reveal` (every round): for each neighbour that sent its masked update, its
   share of ``b``; for each that dropped out after the shares went round, its share of ``s_sk``;
   never both for one neighbour in a key epoch (the mask key unmasks every round of the epoch, so
   with a self-mask seed of any round it would unmask that round's update), and nothing if fewer
   than ``threshold`` sites remain. The next round's self-mask is dealt with this answer, unless a
   neighbour dropped out (its mask key is then known and the epoch ends).

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
from fedhealth.secagg.identity import Identity, verify_signed

S_SHARE, B_SHARE = "s", "b"
EPOCH_ROUND = -1  # the mask key's shares hold for the whole epoch


def advert_bytes(*, job: str, epoch: int, site: str, c_pk: bytes, s_pk: bytes) -> bytes:
    """What a site signs in its key advertisement."""
    return b"|".join(
        [b"fedhealth-secagg-advert", job.encode(), str(epoch).encode(), site.encode(), c_pk, s_pk]
    )


def share_aad(*, job: str, epoch: int, rnd: int, kind: str, sender: str, receiver: str) -> bytes:
    """The associated data a sealed share is bound to."""
    return "|".join(["fedhealth-secagg-share", job, str(epoch), str(rnd), kind, sender, receiver]).encode()


def mask_seed(shared: bytes, rnd: int) -> bytes:
    """The round's pairwise mask seed from a pair's agreed key."""
    return crypto.derive(shared, info=f"fedhealth-secagg-mask|{rnd}".encode())


def pair_info(job: str, epoch: int) -> bytes:
    """What a pair's mask key is bound to (the server recomputes it for a site that dropped out)."""
    return f"fedhealth-secagg-pair|{job}|{epoch}".encode()


def pair_sign(me: str, peer: str) -> int:
    """+1 if ``me`` adds the pair's mask, -1 if it subtracts it (the pair's masks cancel)."""
    return 1 if me < peer else -1


def check_adverts(adverts: dict[str, dict], *, job: str, epoch: int, root_pem: bytes) -> None:
    """Every advertisement signed by its site's certificate for this job and epoch (``ValueError`` if not)."""
    for name, ad in adverts.items():
        if ad.get("site") != name or ad.get("job") != job or ad.get("epoch") != epoch:
            raise ValueError(
                f"the key advertisement of {name} is for site {ad.get('site')!r}, job {ad.get('job')!r}, "
                f"epoch {ad.get('epoch')!r}, not {name}/{job}/{epoch}: replayed or forged, refused"
            )
        data = advert_bytes(job=job, epoch=epoch, site=name, c_pk=ad["c_pk"], s_pk=ad["s_pk"])
        verify_signed(name=name, data=data, signature=ad["sig"], cert_pem=ad["cert"], root_pem=root_pem)


@dataclass
class _Epoch:
    number: int
    c_sk: bytes
    s_sk: bytes
    adverts: dict[str, dict] = field(default_factory=dict)
    neighbours: list[str] = field(default_factory=list)
    xs: dict[str, int] = field(default_factory=dict)  # site -> its Shamir point
    threshold: int = 0
    held: dict[tuple[str, int, str], bytes] = field(default_factory=dict)  # (kind, round, sender) -> share
    seeds: dict[int, bytes] = field(default_factory=dict)  # round -> own self-mask seed
    contributors: dict[int, list[str]] = field(default_factory=dict)
    revealed: dict[str, str] = field(default_factory=dict)  # peer -> the kind of secret revealed
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
        """Fresh key pairs for ``epoch`` and the signed advertisement of their public halves."""
        if config != self.config.as_dict():
            raise ValueError(
                f"the server's SecAgg settings {config} differ from this site's {self.config.as_dict()}; "
                "refused (a job's client and server must agree)"
            )
        c_sk, c_pk = crypto.new_keypair()
        s_sk, s_pk = crypto.new_keypair()
        self.epoch = _Epoch(number=int(epoch), c_sk=c_sk, s_sk=s_sk)
        data = advert_bytes(job=self.job, epoch=int(epoch), site=self.name, c_pk=c_pk, s_pk=s_pk)
        return {
            "site": self.name,
            "job": self.job,
            "epoch": int(epoch),
            "c_pk": c_pk,
            "s_pk": s_pk,
            "cert": self.identity.cert_pem,
            "sig": self.identity.sign(data),
        }

    def share_keys(self, *, epoch: int, adverts: dict[str, dict], graph_seed: int, rnd: int) -> dict:
        """Check the roster, find the neighbours, deal ``s_sk`` and round ``rnd``'s self-mask seed."""
        ep = self._epoch(epoch)
        if self.name not in adverts or adverts[self.name].get("c_pk") != crypto.public_of(ep.c_sk):
            raise ValueError("the roster does not hold this site's own advertisement of this epoch; refused")
        check_adverts(adverts, job=self.job, epoch=ep.number, root_pem=self.identity.root_pem)
        names = sorted(adverts)
        degree = self.config.degree(len(names))
        ep.threshold = self.config.threshold_for(len(names))
        ep.adverts = dict(adverts)
        ep.neighbours = neighbour_graph(names, degree=degree, seed=int(graph_seed))[self.name]
        ep.xs = {s: i + 1 for i, s in enumerate(names)}
        return {S_SHARE: self._deal(S_SHARE, ep.s_sk, EPOCH_ROUND), B_SHARE: self.deal_self_mask(rnd)}

    def deal_self_mask(self, rnd: int) -> dict[str, bytes]:
        """A fresh self-mask seed for round ``rnd``, Shamir-shared and sealed for each neighbour."""
        ep = self._ready()
        seed = os.urandom(crypto.KEY_BYTES)
        ep.seeds[int(rnd)] = seed
        return self._deal(B_SHARE, seed, rnd)

    def _deal(self, kind: str, secret: bytes, rnd: int) -> dict[str, bytes]:
        ep = self._ready()
        shares = shamir.split(secret, threshold=ep.threshold, xs=[ep.xs[j] for j in ep.neighbours])
        out = {}
        for j in ep.neighbours:
            key = self._pair_key(j)
            aad = share_aad(job=self.job, epoch=ep.number, rnd=rnd, kind=kind, sender=self.name, receiver=j)
            out[j] = crypto.seal(key, shares[ep.xs[j]], aad=aad)
        return out

    # ------------------------------------------------------------------ a round
    def receive(
        self, *, epoch: int, rnd: int, contributors: list[str], shares: dict[str, dict[str, bytes]]
    ) -> None:
        """Open the shares the server relayed for round ``rnd`` (``kind -> sender -> sealed``)."""
        ep = self._epoch(epoch)
        self._ready()
        if self.name not in contributors or rnd not in ep.seeds:
            raise ValueError(f"round {rnd}: this site dealt no self-mask for it; refused")
        unknown = sorted(set(contributors) - set(ep.adverts))
        if unknown:
            raise ValueError(f"round {rnd}: contributors {unknown} are not in this epoch's roster; refused")
        for kind, sealed_by in shares.items():
            if kind not in (S_SHARE, B_SHARE):
                raise ValueError(f"round {rnd}: unknown share kind {kind!r}; refused")
            for sender, sealed in sealed_by.items():
                if sender not in ep.neighbours:
                    raise ValueError(f"round {rnd}: a share from {sender}, not a neighbour; refused")
                share_round = EPOCH_ROUND if kind == S_SHARE else rnd
                aad = share_aad(
                    job=self.job,
                    epoch=ep.number,
                    rnd=share_round,
                    kind=kind,
                    sender=sender,
                    receiver=self.name,
                )
                try:
                    ep.held[(kind, share_round, sender)] = crypto.open_sealed(
                        self._pair_key(sender), sealed, aad=aad
                    )
                except ValueError as exc:
                    raise ValueError(f"round {rnd}: the {kind} share from {sender} {exc}; refused") from exc
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
        for j in ep.neighbours:
            if j in ep.contributors[rnd]:
                seed = mask_seed(self._mask_key(j), rnd)
                p = crypto.prg(seed, out.size, dtype)
                out = out + p if pair_sign(self.name, j) > 0 else out - p
        return out

    def reveal(
        self, *, epoch: int, rnd: int, survivors: list[str], dropped: list[str], deal_next: bool
    ) -> dict:
        """This site's shares for the server's unmasking of round ``rnd`` (and the next round's deal)."""
        ep = self._epoch(epoch)
        if set(survivors) & set(dropped):
            raise ValueError(
                f"round {rnd}: sites {sorted(set(survivors) & set(dropped))} are both survivors and dropped"
            )
        if len(survivors) < ep.threshold:
            raise ValueError(
                f"round {rnd}: only {len(survivors)} sites sent masked updates, fewer than the threshold "
                f"{ep.threshold}; no share is revealed"
            )
        contributors = set(ep.contributors.get(int(rnd), []))
        if not (set(survivors) | set(dropped)) <= contributors:
            raise ValueError(f"round {rnd}: the server names sites that were not contributors; refused")
        out: dict = {B_SHARE: {}, S_SHARE: {}}
        for names, kind, share_round in ((survivors, B_SHARE, rnd), (dropped, S_SHARE, EPOCH_ROUND)):
            for j in names:
                held = ep.held.get((kind, share_round, j))
                if held is None:
                    continue
                # for the whole key epoch: the mask key with any round's self-mask unmasks that round
                if ep.revealed.get(j, kind) != kind:
                    raise ValueError(
                        f"round {rnd}: {j}'s other secret was already revealed in key epoch {ep.number}; "
                        "refused"
                    )
                out[kind][j] = held
        ep.revealed.update({j: kind for kind in (B_SHARE, S_SHARE) for j in out[kind]})
        out["next"] = self.deal_self_mask(rnd + 1) if deal_next and not dropped else None
        ep.seeds.pop(int(rnd), None)
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

    def _pair_key(self, peer: str) -> bytes:
        ep = self.epoch
        info = f"fedhealth-secagg-share|{self.job}|{ep.number}".encode()
        return crypto.agree(ep.c_sk, ep.adverts[peer]["c_pk"], info=info)

    def _mask_key(self, peer: str) -> bytes:
        ep = self.epoch
        return crypto.agree(ep.s_sk, ep.adverts[peer]["s_pk"], info=pair_info(self.job, ep.number))
