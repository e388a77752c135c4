"""`pos-terminal`: the QuickPass terminal's commands: one-shot (pay, settle, …) and `run`, the service."""

from __future__ import annotations

import argparse
import decimal
import json
import logging
import os
import signal
import sys
from pathlib import Path

from terminal import inspect
from terminal.assemble import host_link, terminal
from terminal.capk import CapkError
from terminal.config import ConfigError, TerminalConfig, load_config
from terminal.host.client import HostError
from terminal.journal.journal import JournalError
from terminal.reader.base import ReaderError
from terminal.service import ServiceError, TerminalService
from terminal.ui.feedback import format_amount

DEFAULT_CONFIG = Path("var/demo-world/terminal.toml")


def parse_amount(text: str) -> int:
    """Yuan with up to two decimals ("12.34") → fen; what a merchant types."""
    try:
        value = decimal.Decimal(text)
    except decimal.InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount in yuan (e.g. 12.34)") from None
    fen = value * 100
    if fen != fen.to_integral_value() or not 0 < fen <= 999_999_999_999:
        raise argparse.ArgumentTypeError(f"{text!r}: give yuan with at most two decimals, more than 0")
    return int(fen)


def _pay(args: argparse.Namespace) -> int:
    config = load_config(Path(args.config))
    with terminal(config) as parts:
        if not args.json:
            print(f"{parts.reader.identify()}; present the card or phone for {format_amount(args.amount)}",
                  flush=True)
        sale = parts.counter.sale(args.amount, wait_seconds=args.wait)
    if args.json:
        print(json.dumps(sale.to_json()))
    else:
        print(f"{sale.outcome}: {sale.message}")
        for line in sale.receipt(config.terminal.merchant_id):
            print(f"  | {line}")
    return 0 if sale.outcome == "Approved" else 1


def _settle(args: argparse.Namespace) -> int:
    config = load_config(Path(args.config))
    link = host_link(config)
    try:
        result = link.settle()
    finally:
        link.journal.close()
    print(json.dumps(result.__dict__, default=str) if args.json else
          f"batch settlement: {'balanced' if result.balanced else 'NOT balanced'}")
    return 0 if result.balanced else 1


def _fare(args: argparse.Namespace) -> int:
    """A transit fare on the e-purse (no host: the TAC goes to the clearing centre later)."""
    config = load_config(Path(args.config))
    with terminal(config) as parts:
        result = parts.counter.fare(args.amount, wait_seconds=args.wait)
    summary = {"outcome": str(result.outcome), "message": result.message, "amount": result.amount,
               "balance_after": result.balance_after, "tac": result.tac.hex().upper() if result.tac else None,
               "recovered": result.recovered, "city": result.city_code}
    print(json.dumps(summary) if args.json else f"{result.outcome}: {result.message}"
          + (f" (balance {format_amount(result.balance_after)})" if result.balance_after is not None else ""))
    return 0 if result.outcome == "Approved" else 1


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
    with terminal(config) as parts:
        checks = inspect.doctor(config, parts.reader)
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
    takes = (f"a gate: fare {format_amount(gate)} at every tap" if gate is not None else
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
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    pay = commands.add_parser("pay", help="one sale: wait for a card or phone, run the kernel, authorize")
    pay.add_argument("amount", type=parse_amount, help="amount in yuan, e.g. 12.34")
    pay.add_argument("--json", action="store_true", help="print one JSON object (outcome, codes, timings …)")
    pay.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the card (30)")
    pay.set_defaults(run=_pay)
    fare_parser = commands.add_parser("fare", help="a transit fare on a transit card or the phone's (express mode)")
    fare_parser.add_argument("amount", type=parse_amount, help="fare in yuan, e.g. 2.00")
    fare_parser.add_argument("--json", action="store_true")
    fare_parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the card (30)")
    fare_parser.set_defaults(run=_fare)
    read = commands.add_parser("read", help="read a card or phone without paying (labels, AIDs, masked PAN)")
    read.add_argument("--json", action="store_true")
    read.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the card (30)")
    read.set_defaults(run=_read)
    doctor = commands.add_parser("doctor", help="check reader, GPIO, CAPK, host and clock, with hints")
    doctor.set_defaults(run=_doctor)
    run = commands.add_parser("run", help="the service: sales from the ECRs, status endpoint, sd_notify")
    run.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE", help="as before the command")
    run.add_argument("--wait", type=float, default=30.0, help="seconds each sale waits for the card (30)")
    run.set_defaults(run=_run)
    settle = commands.add_parser("settle", help="close the batch: send the totals, report balanced or not")
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
    finally:
        os.umask(previous_umask)


if __name__ == "__main__":
    raise SystemExit(main())
