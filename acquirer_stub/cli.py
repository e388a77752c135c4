"""`acquirer-stub`: load the test world into an instance folder, then serve the back end."""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from acquirer_stub.instance import CONFIG, DEFAULT_LISTEN, DEFAULT_WEB_LISTEN, Instance, InstanceError, address
from acquirer_stub.loader import init_instance
from acquirer_stub.store.db import shown
from firmware.issuing.layout import World
from firmware.jsonfile import FileFormatError
from firmware.privatefiles import private_umask

DEFAULT_INSTANCE = Path("var/acquirer")


def _init(args: argparse.Namespace) -> int:
    root = Path(args.instance)
    if args.force and root.exists():
        shutil.rmtree(root)
    instance, counts = init_instance(root, World.open(Path(args.world)), listen=args.listen,
                                     web_listen=args.web_listen, database=args.database, replace=args.force)
    print(f"acquirer instance in {root} (database: {shown(instance.database)}): "
          + ", ".join(f"{n} {what}" for what, n in counts.items()))
    for user in instance.world.users():
        print(f"  {user['role']:10} login: {user['username']} / {user['password']}  (test world)")
    print(f"  /metrics: Authorization: Bearer <metrics_token of {root / CONFIG}>, or an operator's login")
    return 0


def _password(args: argparse.Namespace) -> int:
    from acquirer_stub.accounts import PasswordError, reset_password
    from acquirer_stub.store import db

    instance = Instance.open(Path(args.instance))
    connection = db.connect(instance.database)
    try:
        new = reset_password(connection, args.username)
    except PasswordError as error:
        raise InstanceError(str(error)) from None
    finally:
        connection.close()
    print(f"new password for {args.username}: {new}  (shown once; every session of {args.username} ended)")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from acquirer_stub.app import create_app
    from acquirer_stub.serving import create_server
    from acquirer_stub.webprocess import WebProcess

    root = Path(args.instance)
    app = create_app(root)
    instance = app.config["INSTANCE"]
    api_host, api_port = address(args.listen or instance.listen, "listen")
    web_listen = instance.web_listen if args.web_listen is None else args.web_listen
    web_address = address(web_listen, "web listen") if web_listen else None
    web_url = ""  # once the web process listens

    def elsewhere() -> str:
        if web_url:
            return f"pages, logins and the token service are on {web_url}"
        return "this acquirer serves no pages (web listen is off)" if web_address is None else "pages are starting"

    if args.workers > 1:
        return _serve_workers(root, api_host, api_port, web_address, args.workers)
    try:
        server = create_server(app, api_host, api_port, serves="api", elsewhere=elsewhere)
    except OSError as error:  # a taken port, an address not on this machine
        raise InstanceError(f"listen on {api_host}:{api_port}: {error.strerror or error}") from None
    api_url = f"http://{api_host}:{server.effective_port}/"  # port 0 asks the system for a free one: say which
    web = WebProcess(root, *web_address, api_url) if web_address else None
    signal.signal(signal.SIGTERM, _stop)  # systemd's stop: waitress ends its loop, the web process after it
    try:
        lines = [f"acquirer stub: terminal API on {api_url}"]
        if web is not None:
            web_url = f"http://{web_address[0]}:{web.start()}/"
            lines.append(_pages_line(web_url))
        print("\n".join(lines), flush=True)
        server.run()
    finally:
        server.close()
        if web is not None:
            web.stop()
    return 0


def _pages_line(web_url: str) -> str:
    return (f"  dashboard: {web_url}dashboard/  cardholder pages: {web_url}cardholder/  "
            f"token service: {web_url}tsp/v1/")


def _serve_workers(root: Path, api_host: str, api_port: int, web_address: tuple[str, int] | None,
                   workers: int) -> int:
    """The API in `workers` gunicorn processes (acquirer_stub.workers), the pages in their own process as ever."""
    from acquirer_stub.webprocess import WebProcess
    from acquirer_stub.workers import bind

    try:
        listener = bind(api_host, api_port)
    except OSError as error:
        raise InstanceError(f"listen on {api_host}:{api_port}: {error.strerror or error}") from None
    api_url = f"http://{api_host}:{listener.getsockname()[1]}/"
    web = WebProcess(root, *web_address, api_url) if web_address else None
    arbiter: subprocess.Popen[bytes] | None = None
    signal.signal(signal.SIGTERM, _stop)  # systemd's stop: the arbiter ends its workers, then the web process goes
    try:
        lines = [f"acquirer stub: terminal API on {api_url} ({workers} worker processes)"]
        elsewhere = "this acquirer serves no pages (web listen is off)"
        if web is not None:
            web_url = f"http://{web_address[0]}:{web.start()}/"
            lines.append(_pages_line(web_url))
            elsewhere = f"pages, logins and the token service are on {web_url}"
        arbiter = subprocess.Popen([sys.executable, "-m", "acquirer_stub.workers", str(root),
                                    str(listener.fileno()), str(workers), elsewhere], pass_fds=(listener.fileno(),))
        print("\n".join(lines), flush=True)
        return arbiter.wait()
    finally:
        if arbiter is not None and arbiter.poll() is None:
            arbiter.terminate()  # gunicorn's graceful stop
            try:
                arbiter.wait(30)
            except subprocess.TimeoutExpired:
                arbiter.kill()
                arbiter.wait()
        if web is not None:
            web.stop()
        listener.close()


def _workers(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of processes from 1 to 64")
    return int(text)


def _stop(*_: object) -> None:
    raise SystemExit(0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="acquirer-stub",
        description="Acquirer, issuer hosts, token service, settlement and dashboard in one Flask app.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    init = commands.add_parser("init", help="create an instance folder and load a test world into its database")
    init.add_argument("--world", required=True, help="the test world folder (pos-card world DIR)")
    init.add_argument("--instance", default=str(DEFAULT_INSTANCE), help=f"instance folder ({DEFAULT_INSTANCE})")
    init.add_argument("--listen", default=DEFAULT_LISTEN, help=f"host:port of the terminal API ({DEFAULT_LISTEN})")
    init.add_argument("--web-listen", default=DEFAULT_WEB_LISTEN,
                      help=f"host:port of the dashboard, cardholder pages and token service ({DEFAULT_WEB_LISTEN};"
                           " '' = none)")
    init.add_argument("--database", default="", metavar="URL",
                      help="a PostgreSQL database (postgresql://USER@HOST/DB) for several acquirer processes; "
                           "default: a SQLite file in the instance folder")
    init.add_argument("--force", action="store_true",
                      help="replace an existing instance (and empty the --database given)")
    init.set_defaults(run=_init)
    serve = commands.add_parser(
        "serve", help="serve the terminal API, and in a second process the dashboard, pages and token service",
        description="Serve the terminal API (this process) and the web listener: dashboard, cardholder pages, "
                    "logins, live feeds and token service (a child process at a lower CPU priority, so a busy page "
                    "or a login flood never slows a payment down). Port 0 picks a free port.")
    serve.add_argument("--instance", default=str(DEFAULT_INSTANCE), help=f"instance folder ({DEFAULT_INSTANCE})")
    serve.add_argument("--listen", help="host:port of the terminal API (default: from the instance)")
    serve.add_argument("--web-listen", help="host:port of the web listener (default: from the instance; '' = none)")
    serve.add_argument("--workers", type=_workers, default=1, metavar="N",
                       help="serve the terminal API in N processes (gunicorn; 1 = one process, the default); "
                            "on PostgreSQL they decide side by side")
    serve.set_defaults(run=_serve)
    password = commands.add_parser("password", help="set a new random password for a user who forgot theirs")
    password.add_argument("username", help="the login, e.g. the operator's (acquirer-stub init printed it)")
    password.add_argument("--instance", default=str(DEFAULT_INSTANCE), help=f"instance folder ({DEFAULT_INSTANCE})")
    password.set_defaults(run=_password)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with private_umask():  # the instance, its database and whatever SQLite puts beside it: ours alone
            return args.run(args)
    except (InstanceError, FileFormatError, RuntimeError, ConnectionError) as error:
        print(f"acquirer-stub: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"acquirer-stub: {error.strerror or error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
