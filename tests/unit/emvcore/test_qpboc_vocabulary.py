"""The shared qPBOC vocabulary against the doc's published byte values (emv-qpboc.md §2.2, §2.4, §3, §8.1)."""

from __future__ import annotations

import pytest

from emvcore.crypto.cryptogram import ALGORITHM_NAMES, Algorithm
from emvcore.qpboc import (
    AID_KINDS,
    CREDIT_AID,
    DEBIT_AID,
    QUASI_CREDIT_AID,
    RID,
    Cryptogram,
    Ctq,
    Iad,
    IadError,
    Ttq,
    aid_kind,
)

# A real online qPBOC answer's 9F10 (doc §2.4): DKI 01, CVN 01, CVR 03A00000 (ARQC), 3DES, IDD 0A01…
REAL_IAD = bytes.fromhex("07010103A0000001" "0A010000000000" "79B28199")


def test_the_aids_are_the_published_unionpay_ones() -> None:
    assert [aid.hex().upper() for aid in (DEBIT_AID, CREDIT_AID, QUASI_CREDIT_AID)] == [
        "A000000333010101", "A000000333010102", "A000000333010103",
    ]
    assert all(aid.startswith(RID) for aid in AID_KINDS.values()) and RID.hex().upper() == "A000000333"
    assert [aid_kind(aid) for aid in (DEBIT_AID, CREDIT_AID, QUASI_CREDIT_AID)] == ["debit", "credit", "quasi-credit"]
    assert aid_kind(bytes.fromhex("A000000632010105")) is None  # transit is not a qPBOC product


def test_ttq_bits_give_the_docs_values() -> None:
    base = Ttq.QPBOC | Ttq.ONLINE_PIN | Ttq.SIGNATURE | Ttq.FDDA_V01
    assert base.to_bytes().hex().upper() == "26000080"  # doc §3.1
    assert (base | Ttq.CDCVM).to_bytes().hex().upper() == "26004080"
    assert (base | Ttq.ONLINE_CRYPTOGRAM_REQUIRED | Ttq.CVM_REQUIRED).to_bytes().hex().upper() == "26C00080"
    assert Ttq.from_bytes(bytes.fromhex("27004080")) & Ttq.OFFLINE_ONLY == 0  # UEMV sample: 1.1 is RFU, kept
    assert Ttq.from_bytes(bytes.fromhex("27004080")).to_bytes() == bytes.fromhex("27004080")


def test_ctq_bits_and_hostile_lengths() -> None:
    assert Ctq.from_bytes(bytes.fromhex("0080")) == Ctq.CDCVM_PERFORMED  # Apple Pay's CTQ (doc §3.2)
    ctq = Ctq.from_bytes(bytes.fromhex("2800"))
    assert Ctq.ONLINE_IF_ODA_FAILS in ctq and Ctq.ONLINE_IF_EXPIRED in ctq and Ctq.ONLINE_PIN not in ctq
    assert Ctq.from_bytes(b"") == Ctq(0) and Ctq.from_bytes(b"\x80").to_bytes() == b"\x80\x00"
    assert Ctq.from_bytes(b"\x00\x80\xff").to_bytes() == b"\x00\x80"  # extra bytes are not bits


@pytest.mark.parametrize(("cvr", "expected"), [
    ("03A00000", Cryptogram.ARQC), ("03900000", Cryptogram.TC), ("03800000", Cryptogram.AAC),
    ("03200000", Cryptogram.ARQC),  # b8-b7 do not matter for the type
    ("03B00000", None),  # b6-b5 = 11 is reserved
    ("03", None),
])
def test_the_cryptogram_type_is_cvr_byte_2_b6_b5(cvr: str, expected: Cryptogram | None) -> None:
    assert Cryptogram.of_cvr(bytes.fromhex(cvr)) is expected


def test_cryptogram_cvr_and_cid() -> None:
    assert [kind.cvr().hex().upper() for kind in Cryptogram] == ["03800000", "03900000", "03A00000"]
    assert [Cryptogram[name].cid for name in ("ARQC", "TC", "AAC")] == [0x80, 0x40, 0x00]


def test_iad_codec_reads_a_real_card_and_round_trips() -> None:
    iad = Iad.decode(REAL_IAD)
    assert (iad.dki, iad.cvn, iad.cvr.hex().upper(), iad.algorithm) == (1, 1, "03A00000", 0x01)
    assert iad.cryptogram is Cryptogram.ARQC and iad.cipher is Algorithm.TDES
    assert iad.encode() == REAL_IAD
    fresh = Iad(1, 1, Cryptogram.TC.cvr(), Algorithm.SM4).encode()
    assert fresh.hex().upper() == "07010103900000040A01" + "00" * 9 and len(fresh) == 19


@pytest.mark.parametrize("raw", ["", "0701010390", "06010103900000010A01", "0701010490000001", "07010103"])
def test_iad_codec_refuses_foreign_layouts(raw: str) -> None:
    with pytest.raises(IadError):
        Iad.decode(bytes.fromhex(raw))


def test_an_unknown_algorithm_id_is_none_not_an_error() -> None:
    assert Iad.decode(bytes.fromhex("0701010390000007")).cipher is None


def test_algorithm_names_are_the_files_spelling() -> None:
    assert dict(ALGORITHM_NAMES) == {Algorithm.TDES: "3des", Algorithm.SM4: "sm4"}
    assert [Algorithm.named(name) for name in ("3des", "sm4")] == [Algorithm.TDES, Algorithm.SM4]
    assert Algorithm.SM4.file_name == "sm4"
    with pytest.raises(ValueError, match="unknown cryptogram algorithm 'des'"):
        Algorithm.named("des")
