"""`acquirer-stub`: load the test world into an instance folder, then serve the back end."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from acquirer_stub.instance import DEFAULT_LISTEN, InstanceError
from acquirer_stub.loader import init_instance
from firmware.jsonfile import FileFormatError
from firmware.privatefiles import private_umask
from firmware.world.layout import World

DEFAULT_INSTANCE = Path("var/acquirer")


def _init(args: argparse.Namespace) -> int:
    root = Path(args.instance)
    if args.force and root.exists():
        shutil.rmtree(root)
    instance, counts = init_instance(root, World.open(Path(args.world)), listen=args.listen)
    print(f"acquirer instance in {root}: " + ", ".join(f"{n} {what}" for what, n in counts.items()))
    for user in instance.world.users():
        print(f"  {user['role']:10} login: {user['username']} / {user['password']}  (test world)")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from acquirer_stub.app import create_app
    from acquirer_stub.serving import create_server

    root = Path(args.instance)
    app = create_app(root)
    listen = args.listen or app.config["INSTANCE"].listen
    host, _, port = listen.rpartition(":")
    server = create_server(app, host, int(port))
    listen = f"{host}:{server.effective_port}"  # port 0 asks the system for a free one: say which
    print(f"acquirer stub on http://{listen}/ (dashboard: http://{listen}/dashboard/)", flush=True)
    server.run()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="acquirer-stub",
        description="Acquirer, issuer hosts, token service, settlement and dashboard in one Flask app.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    init = commands.add_parser("init", help="create an instance folder and load a test world into its database")
    init.add_argument("--world", required=True, help="the test world folder (pos-card world DIR)")
    init.add_argument("--instance", default=str(DEFAULT_INSTANCE), help=f"instance folder ({DEFAULT_INSTANCE})")
    init.add_argument("--listen", default=DEFAULT_LISTEN, help=f"host:port to serve on ({DEFAULT_LISTEN})")
    init.add_argument("--force", action="store_true", help="replace an existing instance")
    init.set_defaults(run=_init)
    serve = commands.add_parser("serve", help="serve the API, token service and dashboard (waitress)")
    serve.add_argument("--instance", default=str(DEFAULT_INSTANCE), help=f"instance folder ({DEFAULT_INSTANCE})")
    serve.add_argument("--listen", help="host:port (default: from the instance)")
    serve.set_defaults(run=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with private_umask():  # the instance, its database and whatever SQLite puts beside it: ours alone
            return args.run(args)
    except (InstanceError, FileFormatError, RuntimeError) as error:
        print(f"acquirer-stub: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"acquirer-stub: {error.strerror or error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
