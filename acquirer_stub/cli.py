"""`acquirer-stub`: load the test world and serve the back end (filled by the acquirer-stub issue)."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="acquirer-stub",
        description="Acquirer, issuer hosts, token service, settlement and dashboard in one Flask app.",
        epilog="init and serve are not built yet; see the open issues.",
    )
    parser.add_argument("--instance", metavar="DIR", help="instance folder (configuration, database)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
