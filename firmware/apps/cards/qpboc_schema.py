"""JSON schema of a qPBOC application: profile, keys and state kept apart (a phone seals the keys)."""

from __future__ import annotations

from typing import Any

from emvcore.crypto.cryptogram import ALGORITHM_NAMES, Algorithm
from firmware.apps.cards.qpboc import OdaData, OfflineRules, QPbocKeys, QPbocProfile, QPbocState
from firmware.jsonfile import Fields, FileFormatError


def profile_to_dict(profile: QPbocProfile) -> dict[str, Any]:
    data: dict[str, Any] = {
        "aid": profile.aid.hex().upper(),
        "label": profile.label,
        "pan": profile.pan,
        "psn": profile.psn,
        "expiry": profile.expiry.isoformat(),
        "effective": profile.effective.isoformat(),
        "priority": profile.priority,
        "service_code": profile.service_code,
        "cardholder_name": profile.cardholder_name,
        "country": profile.country,
        "currency": profile.currency,
        "aip": profile.aip.hex().upper(),
        "dki": profile.dki,
        "algorithm": Algorithm(profile.algorithm).file_name,
        "ctq": profile.ctq.hex().upper(),
        "cvm": profile.cvm,
        "offline": {
            "enabled": profile.offline.enabled,
            "per_transaction_limit": profile.offline.per_transaction_limit,
            "max_consecutive": profile.offline.max_consecutive,
        },
        "par": profile.par,
    }
    if profile.oda is not None:
        oda = profile.oda
        data["oda"] = {
            "ca_index": oda.ca_index,
            "issuer_certificate": oda.issuer_certificate.hex().upper(),
            "issuer_remainder": oda.issuer_remainder.hex().upper(),
            "issuer_exponent": oda.issuer_exponent.hex().upper(),
            "icc_certificate": oda.icc_certificate.hex().upper(),
            "icc_remainder": oda.icc_remainder.hex().upper(),
            "icc_exponent": oda.icc_exponent.hex().upper(),
        }
    return data


def profile_from_dict(fields: Fields) -> QPbocProfile:
    offline = fields.obj("offline")
    oda = None
    if "oda" in fields.data:
        chain = fields.obj("oda")
        oda = OdaData(
            ca_index=chain.int("ca_index", maximum=255),
            issuer_certificate=chain.hex("issuer_certificate"),
            issuer_remainder=chain.hex("issuer_remainder", default=""),
            issuer_exponent=chain.hex("issuer_exponent", length=(1, 3)),
            icc_certificate=chain.hex("icc_certificate"),
            icc_remainder=chain.hex("icc_remainder", default=""),
            icc_exponent=chain.hex("icc_exponent", length=(1, 3)),
        )
    expiry, effective = fields.date("expiry"), fields.date("effective")
    if effective > expiry:
        raise FileFormatError(f"{fields.path}.effective: after the expiry date")
    return QPbocProfile(
        aid=fields.hex("aid", length=tuple(range(5, 17))),
        label=fields.str("label", pattern=r"[ -~]{1,16}"),
        pan=fields.digits("pan", length=(12, 19)),
        psn=fields.int("psn", maximum=99),
        expiry=expiry,
        effective=effective,
        priority=fields.int("priority", minimum=1, maximum=15, default=1),
        service_code=fields.digits("service_code", length=3),
        cardholder_name=fields.str("cardholder_name", pattern=r"[ -~]{0,26}", default=""),
        country=fields.digits("country", length=4),
        currency=fields.digits("currency", length=4),
        aip=fields.hex("aip", length=2),
        dki=fields.int("dki", maximum=255),
        algorithm=Algorithm.named(fields.choice("algorithm", tuple(ALGORITHM_NAMES.values()))),
        ctq=fields.hex("ctq", length=2),
        cvm=fields.choice("cvm", ("signature", "online-pin")),
        offline=OfflineRules(
            enabled=offline.bool("enabled"),
            per_transaction_limit=offline.int("per_transaction_limit"),
            max_consecutive=offline.int("max_consecutive", maximum=255),
        ),
        par=fields.str("par", pattern=r"[0-9A-Z]{0,29}", default=""),
        oda=oda,
    )


def keys_to_dict(keys: QPbocKeys) -> dict[str, Any]:
    return {
        "icc_master_key": keys.icc_master_key.hex().upper(),
        "icc_private_key_pem": keys.icc_private_key_pem.decode("ascii"),
    }


def keys_from_dict(fields: Fields) -> QPbocKeys:
    pem = fields.str("icc_private_key_pem", default="")
    if pem and "PRIVATE KEY" not in pem:
        raise FileFormatError(f"{fields.path}.icc_private_key_pem: not a PEM private key")
    return QPbocKeys(icc_master_key=fields.hex("icc_master_key", length=16), icc_private_key_pem=pem.encode())


def state_to_dict(state: QPbocState) -> dict[str, Any]:
    return {
        "atc": state.atc,
        "offline_balance": state.offline_balance,
        "consecutive_offline": state.consecutive_offline,
        "last_online_atc": state.last_online_atc,
        "blocked": state.blocked,
    }


def state_from_dict(fields: Fields) -> QPbocState:
    return QPbocState(
        atc=fields.int("atc", maximum=0xFFFF),
        offline_balance=fields.int("offline_balance"),
        consecutive_offline=fields.int("consecutive_offline", maximum=255),
        last_online_atc=fields.int("last_online_atc", maximum=0xFFFF),
        blocked=fields.bool("blocked"),
    )
