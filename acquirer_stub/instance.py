"""The instance folder: configuration, the vault key and the database, outside the source tree.

`acquirer-stub init` creates it from a test world; everything else reads it through `Instance`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from acquirer_stub.keys import KeyStore
from acquirer_stub.store.db import is_postgres
from acquirer_stub.vault import Vault
from firmware.issuing.layout import World
from firmware.jsonfile import Fields, FileFormatError, read_json, write_json_atomic
from firmware.privatefiles import private_dir, write_private

CONFIG = "config.json"
VAULT_KEY = "vault.key"
DATABASE = "acquirer.sqlite3"
DEFAULT_LISTEN = "127.0.0.1:8380"  # the terminal API
DEFAULT_WEB_LISTEN = "127.0.0.1:8382"  # dashboard, cardholder pages, token service (8381: the terminal's ECR)


class InstanceError(Exception):
    """The instance folder is missing or its configuration is wrong."""


@dataclass(frozen=True)
class Instance:
    root: Path
    world: World
    secret_key: str
    listen: str  # the terminal API's host:port
    no_pin_limit: int  # fen: contactless sales above it need a CVM (signature or CDCVM)
    https: bool = False  # served over HTTPS (behind a TLS proxy): session cookie Secure, HSTS
    web_listen: str = DEFAULT_WEB_LISTEN  # the pages' and token service's host:port; "" = not served
    database_url: str = ""  # postgresql://…; "" = the SQLite file in the folder
    metrics_token: str = ""  # a scraper's bearer token for /metrics; "" = operators' sessions only
    metrics_public: bool = False  # /metrics for anyone who reaches the web listener

    @property
    def database(self) -> Path | str:
        """Where the database is (`acquirer_stub.store.db.Target`)."""
        return self.database_url or self.root / DATABASE

    @classmethod
    def open(cls, root: Path) -> Instance:
        if not (root / CONFIG).is_file():
            raise InstanceError(f"{root} is not an acquirer instance; create it with: acquirer-stub init --world DIR")
        try:
            config = Fields(read_json(root / CONFIG), "")
            config.header("quickpass-acquirer", 1)
            world = World.open(Path(config.str("world")))
            return cls(root, world, config.str("secret_key"), config.str("listen"),
                       config.int("no_pin_limit"), config.bool("https", default=False),
                       config.str("web_listen", default=DEFAULT_WEB_LISTEN), _database_url(config),
                       config.str("metrics_token", default=""), config.bool("metrics_public", default=False))
        except FileFormatError as error:
            raise InstanceError(f"{root / CONFIG}: {error}") from None

    def vault(self) -> Vault:
        try:
            return Vault(bytes.fromhex((self.root / VAULT_KEY).read_text().strip()))
        except (OSError, ValueError):
            raise InstanceError(f"{self.root / VAULT_KEY}: missing or not a 32-byte hex key") from None

    def keys(self) -> KeyStore:
        return KeyStore.from_world(self.world)


def _database_url(config: Fields) -> str:
    url = config.str("database", default="")
    if url and not is_postgres(url):
        raise FileFormatError("database: must be a postgresql:// URL, or empty for the SQLite file")
    return url


def address(text: str, what: str) -> tuple[str, int]:
    """HOST:PORT (port 0: one the system picks) as (host, port); InstanceError says what is wrong."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise InstanceError(f"{what} {text!r} is not HOST:PORT (e.g. 127.0.0.1:8380)")
    return host, int(port)


def create_instance(root: Path, world: World, *, listen: str = DEFAULT_LISTEN,
                    web_listen: str = DEFAULT_WEB_LISTEN, database: str = "") -> Instance:
    """The folder (0700) with the vault key and the config (0600, it may hold the database URL's password); a
    SQLite database comes private from db.connect."""
    if database and not is_postgres(database):
        raise InstanceError(f"--database {database.split(':', 1)[0]}:…: give a postgresql:// URL, or none for SQLite")
    address(listen, "listen")
    if web_listen:
        address(web_listen, "web listen")
    private_dir(root, ours=True)
    if (root / CONFIG).exists():
        raise InstanceError(f"{root} already holds an acquirer instance; remove it or use --force")
    write_private(root / VAULT_KEY, secrets.token_hex(32) + "\n")
    write_json_atomic(root / CONFIG, {
        "format": "quickpass-acquirer", "version": 1,
        "world": str(world.root.resolve()),
        "secret_key": secrets.token_hex(32),
        "listen": listen,
        "web_listen": web_listen,
        "no_pin_limit": 100_000,
        "https": False,
        "database": database,
        "metrics_token": secrets.token_urlsafe(32),
        "metrics_public": False,
    })
    return Instance.open(root)

