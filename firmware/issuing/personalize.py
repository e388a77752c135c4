"""Personalization: turn an issuer's keys and a PAN into a qPBOC application, a token, or a transit purse.

Pure of file I/O: the world builder decides where things are written.
"""

from __future__ import annotations

import datetime
import secrets
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives.asymmetric import rsa

from emvcore.crypto import oda
from emvcore.crypto.cryptogram import Algorithm, derive_icc_master_key
from emvcore.crypto.transit import diversify_card_key
from emvcore.qpboc import AID_KINDS, AID_LABELS
from firmware.apps.cards.qpboc import (
    OdaData,
    OfflineRules,
    QPbocKeys,
    QPbocProfile,
    static_data_to_authenticate,
)
from firmware.apps.cards.transit import TransitKeys, TransitProfile

CA_INDEX = 0xF1  # a private test index: no production UnionPay key has it
CA_BITS, ISSUER_BITS, ICC_BITS = 1408, 1152, 1024
RSA_EXPONENT = 3


def issue_date(expiry: datetime.date) -> datetime.date:
    """The effective date (5F25) a card gets unless told: 1 January five years before it expires, so a card valid
    today is effective today (the first of the expiry month would make a card "not yet effective" for most of the
    year when it expires on 31 December)."""
    return datetime.date(expiry.year - 5, 1, 1)


def luhn_complete(partial: str) -> str:
    """Append the Luhn check digit, as every PAN carries."""
    total = 0
    for position, char in enumerate(reversed(partial)):
        digit = int(char)
        if position % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return partial + str((10 - total % 10) % 10)


def luhn_valid(pan: str) -> bool:
    return pan.isdigit() and luhn_complete(pan[:-1]) == pan


@dataclass(frozen=True)
class IssuerKeys:
    """An issuer host's secrets: the master key for cryptograms and the RSA key that signs cards."""

    imk_ac: bytes
    rsa_private: rsa.RSAPrivateKey
    certificate: bytes  # 90, by the scheme CA
    remainder: bytes  # 92
    algorithm: Algorithm


def new_issuer(
    ca_private: rsa.RSAPrivateKey, bin_: str, algorithm: Algorithm, expiry: datetime.date
) -> IssuerKeys:
    issuer_private = oda.generate_rsa_key(ISSUER_BITS, RSA_EXPONENT)
    certificate, remainder = oda.make_issuer_certificate(
        ca_private, oda.public_key_of(issuer_private), bin_, expiry, secrets.token_bytes(3)
    )
    return IssuerKeys(secrets.token_bytes(16), issuer_private, certificate, remainder, algorithm)


def new_pan(bin_: str, length: int = 16) -> str:
    body = bin_ + "".join(secrets.choice("0123456789") for _ in range(length - len(bin_) - 1))
    return luhn_complete(body)


def qpboc_card(
    issuer: IssuerKeys,
    *,
    kind: str,
    pan: str,
    expiry: datetime.date,
    effective: datetime.date | None = None,
    cardholder_name: str = "",
    offline: OfflineRules | None = None,
    with_oda: bool = True,
    psn: int = 1,
    cvm: str = "signature",
) -> tuple[QPbocProfile, QPbocKeys]:
    """A plain debit, credit or quasi-credit card of this issuer, with an ICC key and certificate when it does fDDA;
    `effective` defaults to `issue_date(expiry)`."""
    profile = QPbocProfile(
        aid=AID_KINDS[kind],
        label=AID_LABELS[AID_KINDS[kind]],
        pan=pan,
        psn=psn,
        expiry=expiry,
        effective=effective or issue_date(expiry),
        cardholder_name=cardholder_name,
        algorithm=issuer.algorithm,
        cvm=cvm,
        offline=offline or OfflineRules(enabled=with_oda),
    )
    udk = derive_icc_master_key(issuer.algorithm, issuer.imk_ac, pan, psn)
    if not with_oda:
        return replace(profile, offline=OfflineRules(enabled=False)), QPbocKeys(udk)
    icc_private = oda.generate_rsa_key(ICC_BITS, RSA_EXPONENT)
    icc_public = oda.public_key_of(icc_private)
    icc_certificate, icc_remainder = oda.make_icc_certificate(
        issuer.rsa_private,
        icc_public,
        pan,
        expiry,
        secrets.token_bytes(3),
        static_data_to_authenticate(profile),
    )
    chain = OdaData(
        ca_index=CA_INDEX,
        issuer_certificate=issuer.certificate,
        issuer_remainder=issuer.remainder,
        issuer_exponent=oda.public_key_of(issuer.rsa_private).exponent,
        icc_certificate=icc_certificate,
        icc_remainder=icc_remainder,
        icc_exponent=icc_public.exponent,
    )
    return replace(profile, oda=chain), QPbocKeys(udk, oda.private_key_to_pem(icc_private))


def token_card(
    token_imk: bytes, *, token_pan: str, par: str, kind: str, expiry: datetime.date
) -> tuple[QPbocProfile, QPbocKeys]:
    """A wallet token: its own PAN (not the card's), PAR, and keys from the token service's master key.

    Tokens are online-only (no fDDA): the token service maps the token to the funding card at
    authorization time, which is the point of tokenization.
    """
    profile = QPbocProfile(
        aid=AID_KINDS[kind],
        label=AID_LABELS[AID_KINDS[kind]],
        pan=token_pan,
        psn=0,
        expiry=expiry,
        effective=issue_date(expiry),
        offline=OfflineRules(enabled=False),
        par=par,
    )
    return profile, QPbocKeys(derive_icc_master_key(Algorithm.TDES, token_imk, token_pan, 0))


def new_par() -> str:
    """Payment account reference: 4-character BIN controller id + 25 characters (EMVCo format)."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return "U001" + "".join(secrets.choice(alphabet) for _ in range(25))


def transit_card(
    master_purchase_key: bytes, master_tac_key: bytes, master_load_key: bytes, *, card_number: str, city_code: str,
    city_name: str, valid_from: datetime.date, valid_to: datetime.date,
) -> tuple[TransitProfile, TransitKeys]:
    profile = TransitProfile(
        card_number=card_number,
        city_code=city_code,
        city_name=city_name,
        issuer_id=bytes.fromhex(city_code + "0000" + "00000000"),
        valid_from=valid_from,
        valid_to=valid_to,
    )
    keys = TransitKeys(
        purchase_key=diversify_card_key(master_purchase_key, card_number),
        tac_key=diversify_card_key(master_tac_key, card_number),
        load_key=diversify_card_key(master_load_key, card_number),
    )
    return profile, keys
