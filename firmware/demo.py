"""The README's main command, card-side stage: the demo phone tapped against a scripted reader.

It prints the APDU exchange of the seed's story as far as the card side goes: a sale tapped before the
fingerprint ("see phone"), the fingerprint, the re-tap with an ARQC the issuer side can check, and a
transit fare in express mode. The full stack (terminal, acquirer, dashboard) replaces the scripted
reader in later issues.
"""

from __future__ import annotations

import argparse
import datetime
import secrets
import sys
from pathlib import Path

from emvcore import epurse, tlv
from emvcore.apdu import CommandApdu, ResponseApdu, describe_sw
from emvcore.bcd import amount_n12, date_n6
from emvcore.crypto import transit as transit_crypto
from emvcore.crypto.cryptogram import Algorithm, ac_input, compute_ac, derive_icc_master_key, derive_session_key
from emvcore.crypto.transit import diversify_card_key
from emvcore.dol import build_dol_data
from emvcore.qpboc import Iad
from firmware.apps.cards.card import Chip
from firmware.apps.wallet.wallet import Wallet
from firmware.cli import format_exchange
from firmware.issuing.build import create_world
from firmware.issuing.layout import World

DEFAULT_WORLD = Path("var/demo-world")
READER_TTQ = bytes.fromhex("26004080")  # qPBOC, online PIN + signature, CDCVM supported, fDDA v01
TERMINAL_ID = bytes.fromhex("000000000001")


def _send(chip: Chip, command: CommandApdu) -> ResponseApdu:
    raw = command.encode()
    response = chip.transceive(raw)
    print(format_exchange(raw, response))
    return ResponseApdu.decode(response)


def _payment_tap(wallet: Wallet, amount: int) -> tuple[ResponseApdu, dict[int, bytes]]:
    """PPSE, SELECT, GPO; returns the GPO answer and the terminal data it was computed over."""
    chip = wallet.chip()
    print(f"\n-- phone in field, UID {wallet.uid_for_tap().hex().upper()} (new on every tap)")
    ppse = _send(chip, CommandApdu(0x00, 0xA4, 0x04, 0x00, b"2PAY.SYS.DDF01", le=256))
    aid = tlv.find(ppse.data, 0x4F)
    fci = _send(chip, CommandApdu(0x00, 0xA4, 0x04, 0x00, aid, le=256))
    pdol = tlv.find(fci.data, 0x9F38) or b""
    values = {
        0x9F66: READER_TTQ, 0x9F02: amount_n12(amount), 0x9F03: amount_n12(0), 0x9F1A: bytes.fromhex("0156"),
        0x5F2A: bytes.fromhex("0156"), 0x9A: date_n6(datetime.date.today()), 0x9C: b"\x00",
        0x9F37: secrets.token_bytes(4),
    }
    data = build_dol_data(pdol, values)
    gpo = _send(chip, CommandApdu(0x80, 0xA8, 0x00, 0x00, tlv.encode(0x83, data), le=256))
    chip.field_off()
    return gpo, {**values, 0x95: bytes(5)}


def _issuer_check(world: World, card: dict[int, bytes], terminal: dict[int, bytes]) -> bool:
    """What the issuer host (token service + bank) does with the ARQC: recompute it from its own keys."""
    values = {**terminal, **card}
    token_pan = values[0x57].hex().upper().split("D")[0]
    sk = derive_session_key(
        Algorithm.TDES,
        derive_icc_master_key(Algorithm.TDES, bytes.fromhex(world.tsp()["token_imk"]), token_pan, 0),
        int.from_bytes(values[0x9F36], "big"),
    )
    return compute_ac(Algorithm.TDES, sk, ac_input(values, Iad.decode(values[0x9F10]).cvr)) == values[0x9F26]


def _transit_fare(world: World, wallet: Wallet, fare: int) -> bool:
    chip = wallet.chip()
    print(f"\n-- phone at the metro gate, UID {wallet.uid_for_tap().hex().upper()} (express mode: no fingerprint)")
    fci = _send(chip, CommandApdu(0x00, 0xA4, 0x04, 0x00, epurse.AID, le=256))
    if not fci.ok:
        return False
    card_number = tlv.find(fci.data, 0x9F0C)[10:20].hex()[1:17]
    init = _send(chip, CommandApdu(0x80, 0x50, 0x01, 0x02, b"\x01" + fare.to_bytes(4, "big") + TERMINAL_ID, le=15))
    if not init.ok:
        return False
    offline_serial, card_random = int.from_bytes(init.data[4:6], "big"), init.data[11:15]
    city = next(c for c in world.transit_keys() if card_number.startswith(c["city_code"]))
    purchase_key = diversify_card_key(bytes.fromhex(city["purchase_master_key"]), card_number)
    terminal_serial = secrets.token_bytes(4)
    now = bytes.fromhex(datetime.datetime.now().strftime("%Y%m%d%H%M%S"))
    session = transit_crypto.purchase_session_key(purchase_key, card_random, offline_serial, terminal_serial)
    mac1 = transit_crypto.purchase_mac1(session, fare, 0x06, TERMINAL_ID, now)
    debit = _send(chip, CommandApdu(0x80, 0x54, 0x01, 0x00, terminal_serial + now + mac1, le=8))
    chip.field_off()
    return debit.ok and debit.data[4:8] == transit_crypto.purchase_mac2(session, fare)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, default=DEFAULT_WORLD, help=f"test world folder ({DEFAULT_WORLD})")
    parser.add_argument("--fresh", action="store_true", help="create a new test world first")
    args = parser.parse_args(argv)

    if args.fresh or not (args.world / "WORLD.json").exists():
        print(f"creating the test world in {args.world} ...")
        create_world(args.world, force=True, progress=lambda line: print(f"  {line}"))
    world = World.open(args.world)
    wallet = Wallet.load(world.demo_phone)
    finger = world.demo_fingers[0]
    outcomes: list[tuple[str, bool]] = []

    print("\n== 1. Sale of ¥12.34: the shopper taps the phone before verifying a fingerprint")
    first, _ = _payment_tap(wallet, 1234)
    print(f"   terminal shows: {'SEE PHONE' if first.sw == 0x6986 else describe_sw(first.sw)}")
    outcomes.append(("tap before fingerprint answers 'see phone' (6986)", first.sw == 0x6986))

    print(f"\n== 2. The shopper verifies a fingerprint ({finger}) on the phone")
    outcomes.append(("fingerprint accepted", wallet.authenticate(finger)))

    print("\n== 3. Re-tap: the phone answers GPO with an ARQC, consumer-device CVM performed")
    second, terminal = _payment_tap(wallet, 1234)
    values = tlv.flatten(second.data) if second.ok else {}
    cdcvm = bool(values.get(0x9F6C, b"\x00\x00")[1] & 0x80)
    arqc = second.ok and values.get(0x9F10, b"\x00" * 5)[4] == 0xA0
    verified = arqc and _issuer_check(world, values, terminal)
    print(f"   ARQC: {arqc}; CTQ says CDCVM performed: {cdcvm}; issuer recomputes the same ARQC: {verified}")
    outcomes.append(("re-tap gives an ARQC with CDCVM, verified by the issuer key", arqc and cdcvm and verified))

    print("\n== 4. Metro fare of ¥2.00 on the phone's transit card")
    outcomes.append(("transit fare debited, MAC2 checked", _transit_fare(world, Wallet.load(world.demo_phone), 200)))

    print("\n== Summary")
    for text, ok in outcomes:
        print(f"   [{'ok' if ok else 'FAILED'}] {text}")
    print(f"\nThe test world is in {world.root}; try: pos-card wallet list {world.demo_phone}")
    return 0 if all(ok for _, ok in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
