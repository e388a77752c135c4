"""`pos-card`: create the test world, look after phone wallets, and talk APDUs to a card for debugging."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emvcore import tags
from emvcore.apdu import ApduError, CommandApdu, ResponseApdu, describe_sw
from firmware.jsonfile import FileFormatError
from firmware.present import load_presentable
from firmware.wallet.wallet import Wallet, WalletError
from firmware.world import provisioning
from firmware.world.build import WorldExistsError, create_world


def _world(args: argparse.Namespace) -> int:
    phone = create_world(
        Path(args.dir), force=args.force, progress=lambda line: print(f"  {line}", file=sys.stderr)
    )
    print(f"test world created in {phone.parent.parent}")
    print(phone)
    return 0


def format_exchange(command: bytes, response: bytes) -> str:
    """A C-APDU/R-APDU pair for a person: the response as a masked TLV tree, never a raw PAN."""
    answer = ResponseApdu.decode(response)
    lines = [f">> {command.hex(' ').upper()}", f"<< SW {answer.sw:04X} ({describe_sw(answer.sw)})"]
    if answer.data:
        lines.append(tags.dump(answer.data, indent=1))
    return "\n".join(lines)


def _apdu(args: argparse.Namespace) -> int:
    presented = load_presentable(Path(args.present))
    chip = presented.chip()
    print(f"-- card in field, UID {presented.uid_for_tap().hex().upper()}")
    for text in args.apdus:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise SystemExit(f"pos-card apdu: {text!r} is not hexadecimal") from None
        try:
            CommandApdu.decode(raw)
        except ApduError:
            print(f"   (note: {text} is not a well-formed APDU; sending it anyway)")
        print(format_exchange(raw, chip.transceive(raw)))
    chip.field_off()
    print("-- card removed")
    return 0


def _wallet_list(args: argparse.Namespace) -> int:
    wallet = Wallet.load(Path(args.wallet))
    print(f"wallet of {wallet.owner} ({len(wallet.cards)}/8 payment cards)")
    for card in wallet.cards:
        marks = []
        if card.id == wallet.default_card:
            marks.append("default")
        if card.id == wallet.next_tap_card:
            marks.append("next tap")
        suffix = f"  [{', '.join(marks)}]" if marks else ""
        print(f"  {card.id:20} {card.label}  token {tags.mask_pan(card.profile.pan)}  ATC {card.state.atc}{suffix}")
    for transit in wallet.transit:
        express = "  [express]" if transit.id == wallet.express_transit else ""
        print(f"  {transit.id:20} {transit.label}  balance ¥{transit.state.balance / 100:.2f}{express}")
    status = "verified" if wallet.fingerprint.verified else "not verified"
    print(f"fingerprint: {status}")
    return 0


def _wallet_default(args: argparse.Namespace) -> int:
    wallet = Wallet.load(Path(args.wallet))
    wallet.set_default(args.card)
    print(f"default card: {args.card}")
    return 0


def _wallet_choose(args: argparse.Namespace) -> int:
    wallet = Wallet.load(Path(args.wallet))
    wallet.choose_for_next_tap(args.card)
    print(f"next tap pays with: {args.card}")
    return 0


def _wallet_add(args: argparse.Namespace) -> int:
    card = provisioning.add_card_to_wallet(
        Path(args.world), Path(args.wallet), Path(args.card), args.id
    )
    print(f"added {card.id}: {card.label} (token {tags.mask_pan(card.profile.pan)})")
    return 0


def _wallet_remove(args: argparse.Namespace) -> int:
    wallet = Wallet.load(Path(args.wallet))
    wallet.remove_card(args.card)
    print(f"removed {args.card}")
    return 0


def _fingerprint(args: argparse.Namespace) -> int:
    wallet = Wallet.load(Path(args.wallet))
    if wallet.authenticate(args.finger):
        print(f"fingerprint accepted: pay within {wallet.fingerprint.window_seconds} s")
        return 0
    print("fingerprint not recognised", file=sys.stderr)
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pos-card",
        description="The card side of the QuickPass rig: test world, cards, phone wallet, APDU debugging.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    world = commands.add_parser("world", help="create a test world (keys, issuers, cards, demo phone)")
    world.add_argument("dir", help="folder to create; the last line printed is the demo phone's wallet file")
    world.add_argument("--force", action="store_true", help="replace an existing world in that folder")
    world.set_defaults(run=_world)

    apdu = commands.add_parser("apdu", help="tap a card or phone and exchange APDUs (hex), for debugging")
    apdu.add_argument("--present", required=True, metavar="FILE", help="card file or wallet file")
    apdu.add_argument("apdus", nargs="+", metavar="HEX", help="command APDUs, one per argument")
    apdu.set_defaults(run=_apdu)

    fingerprint = commands.add_parser("fingerprint", help="verify the holder on the phone (consumer-device CVM)")
    fingerprint.add_argument("wallet", help="wallet file")
    fingerprint.add_argument("--finger", default="right-thumb", help="which finger touches the sensor")
    fingerprint.set_defaults(run=_fingerprint)

    wallet = commands.add_parser("wallet", help="list, add, remove cards; set the default card")
    wallet_commands = wallet.add_subparsers(dest="wallet_command", metavar="ACTION", required=True)
    listing = wallet_commands.add_parser("list", help="the cards in a wallet")
    listing.add_argument("wallet")
    listing.set_defaults(run=_wallet_list)
    default = wallet_commands.add_parser("default", help="make a card the default")
    default.add_argument("wallet")
    default.add_argument("card", help="card id (see list)")
    default.set_defaults(run=_wallet_default)
    choose = wallet_commands.add_parser("choose", help="pay the next tap with this card (not the default)")
    choose.add_argument("wallet")
    choose.add_argument("card")
    choose.set_defaults(run=_wallet_choose)
    add = wallet_commands.add_parser("add", help="tokenize a bank card of the world into the wallet (max 8)")
    add.add_argument("wallet")
    add.add_argument("--world", required=True, help="the test world folder (its token service)")
    add.add_argument("--card", required=True, help="the plain card file to tokenize")
    add.add_argument("--id", required=True, help="short id for the card in the wallet")
    add.set_defaults(run=_wallet_add)
    remove = wallet_commands.add_parser("remove", help="remove a card from the wallet")
    remove.add_argument("wallet")
    remove.add_argument("card")
    remove.set_defaults(run=_wallet_remove)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (FileFormatError, WalletError, WorldExistsError, provisioning.ProvisioningError) as error:
        print(f"pos-card: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # e.g. `world` given a file, a folder without write permission: one line, no traceback
        print(f"pos-card: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
