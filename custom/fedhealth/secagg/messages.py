"""What SecAgg+ messages sign, seal and derive: the byte strings both sides must agree on (FLARE-free).

- A key advertisement (a key epoch's start) carries a site's share-sealing X25519 public key
  ``c_pk``, signed with its provisioned identity over (job, epoch, site, ``c_pk``).
- A round key carries the site's mask-agreement public key ``s_pk`` of one round, signed over
  (job, epoch, round, site, ``s_pk``). A fresh pair every round: revealing a dropped site's mask key
  of round r (to remove its masks from round r's sum) then reveals nothing of any other round.
- A sealed share is AES-GCM under the pair's ``c`` key; its associated data binds job, epoch, round,
  kind, sender and receiver, so it cannot be replayed into another round or relayed elsewhere.
"""

from __future__ import annotations

from fedhealth.secagg import crypto
from fedhealth.secagg.identity import verify_signed

S_SHARE, B_SHARE = "s", "b"  # shares of a round's mask key, of its self-mask seed


def advert_bytes(*, job: str, epoch: int, site: str, c_pk: bytes) -> bytes:
    """What a site signs in its key advertisement."""
    return b"|".join([b"fedhealth-secagg-advert", job.encode(), str(epoch).encode(), site.encode(), c_pk])


def round_key_bytes(*, job: str, epoch: int, rnd: int, site: str, s_pk: bytes) -> bytes:
    """What a site signs in a round's mask-agreement key."""
    fields = [
        b"fedhealth-secagg-round-key",
        job.encode(),
        str(epoch).encode(),
        str(rnd).encode(),
        site.encode(),
    ]
    return b"|".join([*fields, s_pk])


def share_aad(*, job: str, epoch: int, rnd: int, kind: str, sender: str, receiver: str) -> bytes:
    """The associated data a sealed share is bound to."""
    return "|".join(["fedhealth-secagg-share", job, str(epoch), str(rnd), kind, sender, receiver]).encode()


def seal_key_info(job: str, epoch: int) -> bytes:
    """What a pair's share-sealing key is bound to."""
    return f"fedhealth-secagg-share|{job}|{epoch}".encode()


def pair_info(job: str, epoch: int, rnd: int) -> bytes:
    """What a pair's mask seed of a round is bound to (the server recomputes it for a dropped site)."""
    return f"fedhealth-secagg-pair|{job}|{epoch}|{rnd}".encode()


def pair_mask_seed(s_sk: bytes, peer_s_pk: bytes, *, job: str, epoch: int, rnd: int) -> bytes:
    """The pair's mask seed of round ``rnd`` (the same from either side of the pair)."""
    return crypto.agree(s_sk, peer_s_pk, info=pair_info(job, epoch, rnd))


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
        data = advert_bytes(job=job, epoch=epoch, site=name, c_pk=ad["c_pk"])
        verify_signed(name=name, data=data, signature=ad["sig"], cert_pem=ad["cert"], root_pem=root_pem)


def check_round_key(
    key: dict, *, site: str, job: str, epoch: int, rnd: int, advert: dict, root_pem: bytes
) -> bytes:
    """A site's round key, checked against the certificate of its (checked) advertisement; its ``s_pk``."""
    if (
        not isinstance(key, dict)
        or not isinstance(key.get("s_pk"), bytes)
        or not isinstance(key.get("sig"), bytes)
    ):
        raise ValueError(f"round {rnd}: the mask key of {site} lacks its public key or signature; refused")
    data = round_key_bytes(job=job, epoch=epoch, rnd=rnd, site=site, s_pk=key["s_pk"])
    try:
        verify_signed(name=site, data=data, signature=key["sig"], cert_pem=advert["cert"], root_pem=root_pem)
    except ValueError as exc:
        raise ValueError(
            f"round {rnd}: the mask key of {exc} (replayed from another round or forged); refused"
        ) from exc
    return key["s_pk"]
