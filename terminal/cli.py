"""`pos-terminal`: the QuickPass terminal's commands: one-shot (pay, settle, …) and `run`, the service."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

from emvcore.epurse import PURSE_LIMIT
from hostproto.messages import MAX_AMOUNT, Totals
from hostproto.money import format_yuan, parse_yuan
from terminal import inspect
from terminal.assemble import host_link, terminal
from terminal.capk import CapkError
from terminal.config import ConfigError, TerminalConfig, load_config
from terminal.events import Event, Step
from terminal.host.client import HostError
from terminal.journal.journal import JournalError
from terminal.kernel.outcome import Outcome
from terminal.kernel.transit import TransitResult
from terminal.reader.base import ReaderError
from terminal.sale import SaleResult
from terminal.service import ServiceError, TerminalService
from terminal.ui.feedback import PRESENT_AGAIN, SEE_PHONE

DEFAULT_CONFIG = Path("var/demo-world/terminal.toml")
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention for Ctrl-C

# What the merchant reads while the shopper acts, for the step the counter enters.
SHOPPER_STEPS = {
    Step.SEE_PHONE: f"{SEE_PHONE}: the shopper unlocks the phone (fingerprint), then holds it to the reader again",
    Step.TRY_AGAIN: f"{PRESENT_AGAIN}: the tap did not complete; the shopper holds the card to the reader again",
}


def parse_amount(text: str) -> int:
    """Yuan with up to two decimals ("12.34") → fen; what a merchant types (the project's one parser)."""
    try:
        fen = parse_yuan(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not 0 < fen <= MAX_AMOUNT:
        raise argparse.ArgumentTypeError(f"{text!r}: give more than ¥0.00 and at most {format_yuan(MAX_AMOUNT)}")
    return fen


def _merchant_lines(event: Event) -> None:
    """An observer of the sale: "See phone" / "Present card again" for the merchant, as the counter shows them."""
    line = SHOPPER_STEPS.get(event.step)
    if line is not None and not event.again:  # a phone read again while it waits: said once
        _say(line)


def outcome_line(sale: SaleResult, host_url: str) -> str:
    """The merchant's one line: the outcome once, then why (a host-link failure is named as such)."""
    if sale.outcome == Outcome.DECLINED and sale.rc is None and sale.text:  # no decision came back from the bank
        reason = sale.text.removeprefix("Host: ")
        return (f"Declined: the sale did not reach a decision: {reason} (acquirer {host_url}); "
                f"nothing to collect, `pos-terminal doctor` checks the link")
    if sale.message.startswith(str(sale.outcome)):
        return sale.message
    return f"{sale.outcome}: {sale.message}"


def _say(line: str) -> None:
    print(line, flush=True)


def _pay(args: argparse.Namespace) -> int:
    config = load_config(Path(args.config))
    with terminal(config) as parts:
        if not args.json:
            _say(f"{parts.reader.identify()}; present the card or phone for {format_yuan(args.amount)}")
            parts.counter.observers.append(_merchant_lines)  # with --json, stdout holds one JSON object only
        sale = parts.counter.sale(args.amount, wait_seconds=args.wait)
    if args.json:
        print(json.dumps(sale.to_json()))
    else:
        print(outcome_line(sale, config.host.url))
        for line in sale.receipt(config.terminal.merchant_id):
            print(f"  | {line}")
    return 0 if sale.outcome == Outcome.APPROVED else 1


def totals_line(totals: Totals) -> str:
    """Counts and amounts of a batch, money as receipts show it."""
    return (f"{totals.debit_count} sale(s) {format_yuan(totals.debit_amount)}, "
            f"{totals.credit_count} refund(s) {format_yuan(totals.credit_amount)}")


def _settle(args: argparse.Namespace) -> int:
    config = load_config(Path(args.config))
    link = host_link(config)
    try:
        result = link.settle()
        clearing = link.clear_fares() if config.transit.keys is not None else None  # a terminal that takes fares
    finally:
        link.journal.close()
    if args.json:
        print(json.dumps({**result.__dict__, "transit_clearing": clearing and clearing.__dict__}, default=str))
    else:
        print(f"batch {result.batch:06d}: {'balanced' if result.balanced else 'NOT balanced'} (rc {result.rc})")
        print(f"  terminal: {totals_line(result.terminal_totals)}")
        print(f"  host:     {totals_line(result.host_totals) if result.host_totals else 'no totals in the answer'}")
        if result.new_batch is not None:
            print(f"  batch {result.new_batch:06d} is open for the next sales")
        if clearing is not None:
            print(clearing.line)
    return 0 if result.balanced else 1


def _clear_fares(args: argparse.Namespace) -> int:
    """Transit clearing now, rather than at the service's next round (`run` uploads by itself)."""
    config = load_config(Path(args.config))
    if config.transit.keys is None:
        raise ConfigError("transit.keys", "this terminal takes no fares", 'add [transit] keys = "transit/psam.json"')
    link = host_link(config)
    try:
        result = link.clear_fares()
    finally:
        link.journal.close()
    print(json.dumps(result.__dict__) if args.json else result.line)
    return 0 if result.error is None else 1


def _transit_summary(result: TransitResult, args: argparse.Namespace) -> int:
    """The outcome line (or one JSON object) of a fare or a top-up, the card's new balance when known."""
    summary = {"outcome": str(result.outcome), "message": result.message, "amount": result.amount,
               "balance_after": result.balance_after, "tac": result.tac.hex().upper() if result.tac else None,
               "recovered": result.recovered, "city": result.city_code}
    print(json.dumps(summary) if args.json else f"{result.outcome}: {result.message}"
          + (f" (balance {format_yuan(result.balance_after)})" if result.balance_after is not None else ""))
    return 0 if result.outcome == Outcome.APPROVED else 1


def _fare(args: argparse.Namespace) -> int:
    """A transit fare on the e-purse (no host now: its TAC goes to transit clearing later, `clear-fares`)."""
    config = load_config(Path(args.config))
    with terminal(config) as parts:
        result = parts.counter.fare(args.amount, wait_seconds=args.wait)
    return _transit_summary(result, args)


def _load(args: argparse.Namespace) -> int:
    """A top-up of a transit card at the counter, MAC2 from the acquirer (the card issuer's agent)."""
    config = load_config(Path(args.config))
    with terminal(config) as parts:
        if not args.json:
            _say(f"{parts.reader.identify()}; present the transit card to top up {format_yuan(args.amount)}")
            parts.counter.observers.append(_merchant_lines)
        result = parts.counter.load(args.amount, wait_seconds=args.wait)
    return _transit_summary(result, args)


def parse_load_amount(text: str) -> int:
    """A top-up in yuan (`parse_amount`), at most what a purse may hold."""
    fen = parse_amount(text)
    if fen > PURSE_LIMIT:
        raise argparse.ArgumentTypeError(f"{text!r}: a transit card holds at most {format_yuan(PURSE_LIMIT)}")
    return fen


def _read(args: argparse.Namespace) -> int:
    config = load_config(Path(args.config))
    with terminal(config) as parts:
        if not args.json:
            print(f"{parts.reader.identify()}; present a card or phone", flush=True)
        view = parts.counter.read(wait_seconds=args.wait)
    if view is None:
        print(json.dumps({"card": None}) if args.json else "no card presented")
        return 1
    if args.json:
        print(json.dumps(view.__dict__))
    else:
        print("phone (random UID)" if view.uid_random else "card")
        for app in view.applications:
            details = ", ".join(f"{k} {v}" for k, v in app.items() if k not in ("aid", "label"))
            print(f"  {app['label'] or '?':16} {app['aid']}  {details}")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    config = load_config(Path(args.config))
    checks = inspect.doctor(config)  # each part on its own: one that fails does not hide the others
    for check in checks:
        print(f"[{'pass' if check.ok else 'FAIL'}] {check.name}: {check.detail}"
              + (f"\n       hint: {check.hint}" if check.hint and not check.ok else ""))
    return 0 if all(check.ok for check in checks) else 1


def _run(args: argparse.Namespace) -> int:
    config = load_config(Path(args.config))
    logging.getLogger("terminal.service").setLevel(logging.INFO)  # one line per sale, even without -v
    with terminal(config) as parts:
        service = TerminalService(config, parts, sale_wait=args.wait)
        previous = {sig: signal.signal(sig, lambda *_: service.stop()) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            service.start()
            print(_ready_line(config, service.url), flush=True)
            service.serve()
        except ServiceError as error:
            print(f"pos-terminal: {error}", file=sys.stderr)
            return 2
        finally:
            service.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return 0


def _ready_line(config: TerminalConfig, url: str | None) -> str:
    """What `run` says once it serves: where its endpoints are, and what it takes."""
    gate = config.transit.gate_fare
    takes = (f"a gate: fare {format_yuan(gate)} at every tap" if gate is not None else
             "sales from the local ECR and the virtual ECR" if url else
             'sales from the virtual ECR (local ECR off: [ecr] listen = "")')
    where = f"; ECR on {url}/sale, status on {url}/status, customer display on {url}/display" if url else ""
    return f"ready: {takes}{where}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pos-terminal",
        description="QuickPass point-of-sale terminal: reader, contactless kernel, host link, journal.",
    )
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), metavar="FILE",
                        help=f"terminal configuration (default {DEFAULT_CONFIG}, the demo world's)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the kernel and host link do")
    # the same options after the command (`pos-terminal pay 1.00 --config F`); SUPPRESS keeps the ones given before
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE", help="as before the command")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="as before the command")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, parents=[common])

    pay = command("pay", "one sale: wait for a card or phone, run the kernel, authorize")
    pay.add_argument("amount", type=parse_amount, help="amount in yuan, e.g. 12.34")
    pay.add_argument("--json", action="store_true", help="print one JSON object (outcome, codes, timings …)")
    pay.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the card (30)")
    pay.set_defaults(run=_pay)
    fare_parser = command("fare", "a transit fare on a transit card or the phone's (express mode)")
    fare_parser.add_argument("amount", type=parse_amount, help="fare in yuan, e.g. 2.00")
    fare_parser.add_argument("--json", action="store_true")
    fare_parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the card (30)")
    fare_parser.set_defaults(run=_fare)
    clear = command("clear-fares", "send the fares not yet cleared to the acquirer's transit clearing now")
    clear.add_argument("--json", action="store_true")
    clear.set_defaults(run=_clear_fares)
    load_parser = command("load", "top up a transit card (or the phone's) at the counter, MAC2 from the acquirer")
    load_parser.add_argument("amount", type=parse_load_amount, help="top-up in yuan, e.g. 50.00")
    load_parser.add_argument("--json", action="store_true")
    load_parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the card (30)")
    load_parser.set_defaults(run=_load)
    read = command("read", "read a card or phone without paying (labels, AIDs, masked PAN)")
    read.add_argument("--json", action="store_true")
    read.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the card (30)")
    read.set_defaults(run=_read)
    doctor = command("doctor", "check reader, GPIO, CAPK, host and clock, with hints")
    doctor.set_defaults(run=_doctor)
    run = command("run", "the service: sales from the ECRs, status endpoint, sd_notify")
    run.add_argument("--wait", type=float, default=30.0, help="seconds each sale waits for the card (30)")
    run.set_defaults(run=_run)
    settle = command("settle", "close the batch: send the totals and counts, report balanced or not")
    settle.add_argument("--json", action="store_true")
    settle.set_defaults(run=_settle)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s")
    previous_umask = os.umask(0o077)  # the journal, its key and SQLite's side files: the terminal's user's alone
    try:
        return args.run(args)
    except (ConfigError, CapkError, ReaderError, JournalError) as error:
        print(f"pos-terminal: {error}", file=sys.stderr)
        return 2
    except HostError as error:  # e.g. settle with the host down: the journal keeps everything for the next try
        print(f"pos-terminal: host: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the parts are closed by now (context managers); a sale in flight is in the journal
        print(f"pos-terminal: {args.command}: stopped (Ctrl-C)", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        os.umask(previous_umask)


if __name__ == "__main__":
    raise SystemExit(main())
