"""`pos-card`: create the test world, look after phone wallets, and talk APDUs to a card for debugging."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from emvcore import tags
from emvcore.apdu import ApduError, CommandApdu, ResponseApdu, describe_sw
from firmware.apps.present import load_presentable
from firmware.apps.wallet.wallet import Wallet, WalletError
from firmware.issuing import binding, provisioning
from firmware.issuing.build import WorldExistsError, create_world
from firmware.jsonfile import FileFormatError
from firmware.privatefiles import private_file, private_umask
from firmware.simulator import control, vpcd
from firmware.simulator.emulate import emulate
from firmware.simulator.faults import KINDS
from firmware.simulator.framelog import FrameLog
from firmware.simulator.pty import LinkPathError
from firmware.simulator.rig import RigError, SoftwareRig
from hardware.pn532 import Pn532Error


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


def _wallet_bind(args: argparse.Namespace) -> int:
    """Online binding through the token service, step by step as the phone shows it."""
    wallet = Wallet.load(Path(args.wallet))

    def read_code(client: binding.TokenServiceClient, binding_id: int) -> str:
        if args.code:
            return str(args.code)
        if args.code_from_sms:
            code = binding.code_from_sms(client.sms(), binding_id)
            print("code read from the SMS inbox")
            return code
        try:
            return input("SMS code: ")
        except EOFError:
            raise binding.BindingError("no SMS code entered") from None

    card = binding.bind_card(
        wallet, binding.TokenServiceClient(args.host), username=args.user, password=args.password, pan=args.pan,
        expiry=args.expiry, card_id=args.id, read_code=read_code, report=print,
    )
    print(f"added {card.id}: {card.label} (token {tags.mask_pan(card.profile.pan)})")
    return 0


def _fingerprint(args: argparse.Namespace) -> int:
    if args.control is not None:
        request = {"cmd": "fingerprint", "finger": args.finger, **({"file": args.wallet} if args.wallet else {})}
        accepted = control.request(_control_path(args), request)["accepted"]
        window = "the next tap pays"
    else:
        if not args.wallet:
            raise SystemExit("pos-card fingerprint: name the wallet file (or --control SOCKET of a running rig)")
        wallet = Wallet.load(Path(args.wallet))
        accepted = wallet.authenticate(args.finger)
        window = f"pay within {wallet.fingerprint.window_seconds} s"
    if accepted:
        print(f"fingerprint accepted: {window}")
        return 0
    print("fingerprint not recognised", file=sys.stderr)
    return 1


def _pn532(args: argparse.Namespace) -> int:
    links = [Path(link) for link in args.link]
    control_path = Path(args.control) if args.control else links[0].with_name(links[0].name + ".ctl")
    trace = _open_trace(Path(args.trace)) if args.trace else None
    rig = SoftwareRig(links, link_model=args.link_model)
    try:
        server = control.ControlServer(control_path, rig)
    except control.ControlError:
        rig.close()
        raise
    if trace is not None:
        log = FrameLog(trace)
        for name, chip in rig.chips.items():
            chip.frame_observers.append(log.observer(name, "uart"))
    try:
        if args.present:
            rig.present(Path(args.present))
        for name, chip_status in rig.status()["chips"].items():
            print(f"software PN532 {name}: {chip_status['link']} -> {chip_status['device']}")
        _ready_until_stopped(control_path)
    finally:
        server.close()
        rig.close()
        if trace is not None:
            trace.close()
    print("stopped" + (f"; frames in {args.trace}" if trace is not None else ""))
    return 0


def _ready_until_stopped(control_path: Path) -> None:
    """The control socket named, the ready line (scripts wait for it), then serve until SIGINT or SIGTERM."""
    print(f"control socket: {control_path}  (export POS_CARD_CONTROL={control_path})")
    print("ready; Ctrl-C stops", flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()


def _vpcd(args: argparse.Namespace) -> int:
    endpoint = vpcd.parse_endpoint(args.vpcd)
    control_path = Path(args.control) if args.control else Path(args.present).with_name("vpcd.ctl")
    vpcd.check_card(Path(args.present))  # a wrong file is said as such, before anything is started
    slot = vpcd.VirtualSlot(endpoint)
    try:
        slot.check_reachable()
        server = control.ControlServer(control_path, slot)
    except (vpcd.VpcdError, control.ControlError):
        slot.close()
        raise
    try:
        slot.present(Path(args.present))
        print(f"{Path(args.present).name} in the virtual PC/SC reader (vpcd at {endpoint}); pcsc_scan lists it")
        _ready_until_stopped(control_path)
    finally:
        server.close()
        slot.close()
    print("stopped")
    return 0


def _open_trace(path: Path) -> TextIO:
    try:
        return private_file(path).open("w", encoding="utf-8")
    except OSError as error:
        raise SystemExit(f"pos-card pn532: cannot write the trace {path}: {error.strerror}") from None


def _control_path(args: argparse.Namespace) -> Path:
    path = args.control or os.environ.get("POS_CARD_CONTROL")
    if not path:
        raise SystemExit("pos-card: give --control SOCKET (printed by pos-card pn532) or set POS_CARD_CONTROL")
    return Path(path)


def _rig_command(payload: dict) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        request = {key: value(args) if callable(value) else value for key, value in payload.items()}
        answer = control.request(_control_path(args), {k: v for k, v in request.items() if v is not None})
        print(json.dumps(answer, indent=2) if answer else "ok")
        return 0

    return run


def _emulate(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(f"emulating {args.present} on the PN532 at {args.port}; hold it to a reader (Ctrl-C stops)", flush=True)
    served = emulate(args.port, Path(args.present), taps=args.taps, stop=stop,
                     report=lambda line: print(line, flush=True))
    print(f"{served} taps served")
    return 0


def _fault_value(text: str | None) -> object:
    """Fault values on the command line: numbers (hex with 0x) or nothing."""
    if text is None:
        return None
    try:
        return int(text, 0)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


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
    fingerprint.add_argument("wallet", nargs="?", help="wallet file (with --control: the phone in the field)")
    fingerprint.add_argument("--control", nargs="?", const="", metavar="SOCKET",
                             help="do it through a running software PN532 (default $POS_CARD_CONTROL)")
    fingerprint.add_argument("--finger", default="right-thumb", help="which finger touches the sensor")
    fingerprint.set_defaults(run=_fingerprint)

    pn532 = commands.add_parser("pn532", help="software PN532s on pseudo-terminals around one virtual field")
    pn532.add_argument("--link", action="append", required=True, metavar="PATH",
                       help="symlink to create for a chip's pseudo-terminal (repeat for a second chip)")
    pn532.add_argument("--present", metavar="FILE", help="card or wallet file to hold in the field from the start")
    pn532.add_argument("--control", metavar="SOCKET", help="control socket path (default: first link + .ctl)")
    pn532.add_argument("--link-model", action="store_true",
                       help="pace UART bytes at the chip's baud rate and add air and card time (benchmarks)")
    pn532.add_argument("--trace", metavar="FILE",
                       help="write every frame both ways with its time, one per line (APDU bytes never shown)")
    pn532.set_defaults(run=_pn532)

    virtual = commands.add_parser("vpcd", help="a card or phone in vsmartcard's virtual PC/SC reader (pcscd)",
                                  description="Put an emulated card or phone in the slot of vsmartcard's virtual "
                                              "reader, so any PC/SC application reaches it through pcscd.")
    virtual.add_argument("--present", required=True, metavar="FILE", help="card or wallet file in the slot")
    virtual.add_argument("--vpcd", default=f"127.0.0.1:{vpcd.VPCD_PORT}", metavar="HOST:PORT",
                         help=f"vpcd's slot (Debian's vsmartcard-vpcd listens on {vpcd.VPCD_PORT})")
    virtual.add_argument("--control", metavar="SOCKET", help="control socket path (default: vpcd.ctl beside FILE)")
    virtual.set_defaults(run=_vpcd)

    def rig_parser(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--control", metavar="SOCKET", help="the rig's control socket (default $POS_CARD_CONTROL)")
        return sub

    tap = rig_parser("tap", "hold a card or phone to the software PN532 briefly")
    tap.add_argument("file")
    tap.add_argument("--seconds", type=float, default=2.0, help="how long it stays in the field (2 s)")
    tap.set_defaults(run=_rig_command({"cmd": "present", "file": lambda a: str(Path(a.file).resolve()),
                                       "seconds": lambda a: a.seconds}))
    hold = rig_parser("hold", "hold a card or phone in the field until removed")
    hold.add_argument("file")
    hold.set_defaults(run=_rig_command({"cmd": "present", "file": lambda a: str(Path(a.file).resolve())}))
    rig_parser("remove", "take the card or phone away").set_defaults(run=_rig_command({"cmd": "remove"}))
    fault = rig_parser("fault", "inject a fault: " + ", ".join(sorted([*KINDS, "remove_after"])))
    fault.add_argument("kind")
    fault.add_argument("value", nargs="?", help="seconds, status code, byte index or exchange number")
    fault.add_argument("--chip", help="which chip (its link name) when there are several")
    fault.add_argument("--tear", action="store_true", help="remove_after: the card runs the command first")
    fault.set_defaults(run=_rig_command({
        "cmd": "fault", "kind": lambda a: a.kind, "value": lambda a: _fault_value(a.value),
        "chip": lambda a: a.chip, "tear": lambda a: a.tear or None,
    }))
    reset = rig_parser("reset", "pulse a chip's RSTPDN: it forgets everything and starts again; every armed fault "
                                "is cleared (remove_after too)")
    reset.add_argument("--chip")
    reset.set_defaults(run=_rig_command({"cmd": "reset", "chip": lambda a: a.chip}))
    rig_parser("status", "what the rig holds: chips, field, armed faults").set_defaults(
        run=_rig_command({"cmd": "status"}))

    emulate_parser = commands.add_parser("emulate", help="a card or phone on a real PN532 in target mode")
    emulate_parser.add_argument("--port", required=True, help="serial device of the card-side PN532")
    emulate_parser.add_argument("--present", required=True, metavar="FILE", help="card or wallet file")
    emulate_parser.add_argument("--taps", type=int, help="stop after this many taps")
    emulate_parser.set_defaults(run=_emulate)

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
    bind = wallet_commands.add_parser(
        "bind", help="add a bank card online: log in, card details, SMS code, token delivered (max 8)"
    )
    bind.add_argument("wallet")
    bind.add_argument("--host", required=True, metavar="URL",
                      help="the acquirer stub's web listener (token service), e.g. http://127.0.0.1:8382")
    bind.add_argument("--user", required=True, metavar="NAME", help="the cardholder's login")
    bind.add_argument("--password", required=True, metavar="PW")
    bind.add_argument("--pan", required=True, help="the card number, as keyed on the phone (never printed)")
    bind.add_argument("--expiry", required=True, metavar="MMYY", help="the card's expiry date")
    bind.add_argument("--id", help="short id for the card in the wallet (default card-<last four>)")
    code = bind.add_mutually_exclusive_group()
    code.add_argument("--code", help="the SMS code (default: asked for)")
    code.add_argument("--code-from-sms", action="store_true",
                      help="read the code from the stub's SMS inbox (scripted demos)")
    bind.set_defaults(run=_wallet_bind)
    return parser


VALUES_THAT_MAY_START_WITH_A_DASH = ("--password",)


def glue_values(argv: list[str]) -> list[str]:
    """`--password -x…` → `--password=-x…`: argparse takes a separate value starting with '-' for an option, and a
    password may start with one."""
    glued: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--":
            glued += [word, *words]
            break
        following = next(words, None) if word in VALUES_THAT_MAY_START_WITH_A_DASH else None
        glued.append(word if following is None else f"{word}={following}")
    return glued


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(glue_values(sys.argv[1:] if argv is None else argv))
    try:
        with private_umask():  # worlds, cards, wallets, the control socket: the user's alone
            return args.run(args)
    except (FileFormatError, WalletError, WorldExistsError, provisioning.ProvisioningError, control.ControlError,
            RigError, LinkPathError, Pn532Error, binding.BindingError, vpcd.VpcdError) as error:
        print(f"pos-card: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # e.g. `world` given a file, a folder without write permission: one line, no traceback
        print(f"pos-card: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
