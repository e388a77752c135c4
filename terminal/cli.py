"""`pos-terminal`: the terminal service and its one-shot commands (filled by the terminal issue)."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pos-terminal",
        description="QuickPass point-of-sale terminal: reader, contactless kernel, host link, journal.",
        epilog="The terminal service (run, pay, read, settle, doctor) is not built yet; see the open issues.",
    )
    parser.add_argument("--config", metavar="FILE", help="terminal configuration (terminal.toml of a test world)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
