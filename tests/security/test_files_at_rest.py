"""Issue #11 §7, files at rest: every file that holds a key, a code, a password hash or card data is 0600 in a 0700
folder, and the demo's metro gate is a terminal of its own.

As found: the acquirer's SQLite files (OTP codes in clear, password hashes) were 0644, the world's folders 0755,
and `gate.toml` (a terminal's HMAC key) 0644, a copy of the counter's configuration with the counter's TID.

The demo's folder is built here as `python -m posdemo` builds it (a fresh world, the acquirer's instance, the
software PN532 with its control socket, the gate's config, a child's log), without the two child servers: the
acquirer app is served in this process over real HTTP instead, and the two terminals' journals are opened as
`pos-terminal` opens them. The umask is the usual 022 meanwhile, so the modes come from the code that writes the
files, not from a umask that some entry point set.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostserver import HostServer

from acquirer_stub.app import create_app
from acquirer_stub.instance import Instance
from acquirer_stub.loader import init_instance
from acquirer_stub.store import db
from firmware.issuing.build import create_world
from firmware.issuing.layout import World
from posdemo.stack import Stack
from terminal.config import load_config
from terminal.host.client import HostClient
from terminal.journal import Journal

# public by design (a CAPK list, issuer certificates, the manifest): no key, code, hash or card data
PUBLIC = {"world/WORLD.json", "world/scheme/capk.json", "world/issuers/issuers.json"}
# what must be there for the walk to mean something (each holds a key, a code, a hash or card data)
SECRETS = {
    "acquirer/acquirer.sqlite3", "acquirer/acquirer.sqlite3-wal", "acquirer/acquirer.sqlite3-shm",
    "acquirer/vault.key", "acquirer/config.json",
    "world/terminal.toml", "world/gate.toml", "world/acquirer/terminals.json", "world/acquirer/users.json",
    "world/terminal-journal.sqlite3", "world/terminal-journal.sqlite3-wal", "world/terminal-journal.sqlite3.key",
    "world/gate-journal.sqlite3", "world/gate-journal.sqlite3-wal", "world/gate-journal.sqlite3.key",
    "world/scheme/ca-private.pem", "world/issuers/keys/icbc-debit.json", "world/cards/icbc-debit.json",
    "world/cards/index.json", "world/transit/keys.json", "world/transit/psam.json", "world/tsp/tsp.json",
    "world/phones/demo-phone.json", "world/phones/demo-phone.device-key", "acquirer.log", "demo.lock",
}


@pytest.fixture
def usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _signon(config_path: Path, url: str) -> dict[str, object]:
    """A terminal's sign-on, signed with the TID and key of its configuration, over real HTTP."""
    config = load_config(config_path)
    client = HostClient(url, config.terminal.id, config.host.key)
    return client.post("/api/v1/signon", {"mti": "0800", "tid": config.terminal.id, "stan": "000001",
                                          "local_date": time.strftime("%m%d")})


def _loose(root: Path) -> list[str]:
    """Every folder not 0700 and every file (public ones aside) not 0600 in ``root``, itself included."""
    found = []
    for path in [root, *sorted(root.rglob("*"))]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        relative = str(path.relative_to(root))
        if path.is_symlink() or path.is_socket():
            continue
        if path.is_dir() and mode != 0o700:
            found.append(f"{relative}/ {mode:04o}")
        elif path.is_file() and relative not in PUBLIC and mode != 0o600:
            found.append(f"{relative} {mode:04o}")
    return found


def test_the_demo_folder_holds_its_keys_codes_hashes_and_card_data_0600_in_0700_folders(
    tmp_path: Path, usual_umask: None
) -> None:
    stack = Stack(tmp_path / "demo", say=lambda *_: None)
    server: HostServer | None = None
    held = []
    try:
        stack._take_lock()
        stack.phone = create_world(stack.world_dir, force=True)
        world = stack.world = World.open(stack.world_dir)
        instance = init_instance(stack.instance, world)[0]
        server = HostServer(create_app(instance.root))
        server.start()
        assert _signon(stack.world_dir / "terminal.toml", server.url)["rc"] == "00"  # a nonce and an event written
        held.append(db.connect(instance.database))  # the acquirer running: its -wal and -shm are there
        held[-1].execute("SELECT COUNT(*) FROM nonces").fetchone()
        for journal in ("terminal-journal.sqlite3", "gate-journal.sqlite3"):  # as `pos-terminal` opens them
            held.append(Journal.open(stack.world_dir / journal))
        stack._pn532()  # the software PN532: links and the control socket
        stack._spawn("acquirer stub", [sys.executable, "-c", "pass"])  # a child's log, as the demo opens it

        loose = _loose(stack.dir)
        assert loose == [], loose
        present = {str(p.relative_to(stack.dir)) for p in stack.dir.rglob("*")}
        assert sorted(SECRETS - present) == []
    finally:
        for item in held:
            item.close()
        if server is not None:
            server.stop()
        stack.stop()


def test_an_instance_made_loose_by_an_earlier_version_is_tightened_when_the_acquirer_opens_it(
    instance: Instance, usual_umask: None
) -> None:
    database = instance.database
    wal = database.with_name(database.name + "-wal")
    wal.write_bytes(b"")  # an empty WAL, as a killed server leaves one
    for path in (database, wal):
        path.chmod(0o644)
    connection = db.connect(database)
    try:
        assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in (database, wal)} == {
            database.name: 0o600, wal.name: 0o600}
    finally:
        connection.close()


def test_the_demo_gate_is_a_terminal_of_its_own_that_the_acquirer_knows(tmp_path: Path, usual_umask: None) -> None:
    stack = Stack(tmp_path / "demo", say=lambda *_: None)
    create_world(stack.world_dir)
    world = World.open(stack.world_dir)
    stack._link_gate_config()  # var/demo/gate.toml, the path the README's fare command names
    counter, gate = load_config(stack.world_dir / "terminal.toml"), load_config(stack.gate_config)
    assert gate.terminal.id != counter.terminal.id
    assert gate.host.key != counter.host.key
    assert gate.ecr.listen is None and gate.reader.port != counter.reader.port
    assert gate.journal.path != counter.journal.path
    keys = {t["tid"]: bytes.fromhex(t["key"]) for t in world.terminals()}
    assert keys[gate.terminal.id] == gate.host.key and keys[counter.terminal.id] == counter.host.key
    assert world.terminals()[0]["tid"] == counter.terminal.id  # the counter stays the world's first terminal

    instance = init_instance(tmp_path / "acquirer", world)[0]
    server = HostServer(create_app(instance.root))
    server.start()
    try:
        assert _signon(stack.gate_config, server.url)["rc"] == "00"  # signed with the gate's own key
    finally:
        server.stop()
    connection = db.connect(instance.database)
    try:
        signed_on = {row[0] for row in connection.execute("SELECT tid FROM terminals WHERE signed_on = 1")}
    finally:
        connection.close()
    assert signed_on == {gate.terminal.id}
