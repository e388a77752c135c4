"""What a scenario gets: the world, the acquirer (served and its database), the rig, the terminal and the trace.

Scenarios talk only to this, so the same scenario runs on the software rig and on real PN532s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hil_host import HostRow, TappedHostServer, host_rows
from hil_rig import CAPABILITIES, RESET_LINE, Rig
from hil_terminal import Terminal, terminal, write_config
from hil_trace import Trace
from hostdb import execute
from hostdb import rows as query

from acquirer_stub.instance import Instance
from firmware.apps.cards.cardfile import PlainCard
from firmware.apps.wallet.wallet import Wallet
from firmware.issuing import layout
from firmware.issuing.layout import World
from firmware.jsonfile import read_json, write_json_atomic

SUCCESS_HZ, ALERT_HZ = 1500.0, 750.0


@dataclass
class Bench:
    world: World
    instance: Instance
    host: TappedHostServer
    rig: Rig
    trace: Trace
    folder: Path

    # -- the rig ---------------------------------------------------------------------------------------------

    def require(self, capability: str) -> None:
        """Scenarios that need what only some rigs have: skipped (with the reason) on hardware only."""
        if capability in self.rig.capabilities:
            return
        assert self.rig.kind != "sim", f"the sim rig must offer {capability}"
        pytest.skip(f"this {self.rig.kind} rig cannot {CAPABILITIES[capability]} (run with --rig=sim)")

    @contextlib.contextmanager
    def terminal(self, *, host_timeout: float = 5.0) -> Iterator[Terminal]:
        config = write_config(self.world.path(Path("terminal.toml")), self.world.root / "hil-terminal.toml",
                              host_url=self.host.url, interface=self.rig.interface,
                              reader_port=self.rig.reader_port,
                              journal=self.folder / "journal.sqlite3", host_timeout=host_timeout,
                              backend=self.rig.gpio_backend, reset_line=RESET_LINE in self.rig.capabilities)
        with terminal(config, self.rig, self.trace) as parts:
            yield parts

    # -- the world's cards -----------------------------------------------------------------------------------

    def card(self, issuer: str) -> Path:
        return self.world.path(Path(self.card_entry(issuer)["file"]))

    def named_card(self, name: str) -> Path:
        """A card of the world by its file name (layout.QUASI_CREDIT_CARD, layout.EXPIRED_CARD …)."""
        return self.world.path(layout.card_file(name))

    def card_entry(self, issuer: str) -> dict[str, Any]:
        return next(c for c in self.world.cards() if c["issuer"] == issuer)

    def transit_card(self) -> Path:
        return self.world.path(Path(self.world.transit_cards()[0]["file"]))

    @property
    def phone(self) -> Path:
        return self.world.demo_phone

    def edit_card(self, issuer: str, change: Any) -> None:
        """Change a card file as a cloner or a test engineer would (`change(application_dict)`), then check it
        still loads: the card must stay a valid card, only a wrong one."""
        path = self.card(issuer)
        data = read_json(path)
        change(data["applications"][0])
        write_json_atomic(path, data)
        PlainCard.load(path)

    def fingerprint(self, finger: str = "right-thumb") -> bool:
        self.trace.add("rig", f"fingerprint on the phone ({finger})")
        return Wallet.load(self.phone).authenticate(finger)

    # -- the acquirer ----------------------------------------------------------------------------------------

    def rows(self) -> list[HostRow]:
        rows = host_rows(self.instance)
        self.trace.facts["host rows"] = rows
        return rows

    def query(self, sql: str, *args: Any) -> list[Any]:
        return query(self.instance, sql, *args)

    def execute(self, sql: str, *args: Any) -> None:
        self.trace.add("host", f"acquirer control: {sql.split(' WHERE')[0]}")
        execute(self.instance, sql, *args)

    def money(self, issuer: str) -> int:
        """What the account has paid: debit balance spent, or credit used."""
        (row,) = self.query("SELECT balance, credit_used FROM accounts WHERE issuer = ?", issuer)
        return -row["balance"] if row["balance"] is not None else row["credit_used"]


def signals(events: list[tuple[str, str, object]]) -> list[str]:
    """What the shopper sees and hears, in order: lights as the set lit after each change ("lights 1234",
    "lights -"), messages as shown, and tones ("♪success", "♪alert"). An alert is two beeps; the second comes
    from a timer and may land anywhere later, so only the first (the one shown with its message) is listed —
    `alert_beeps_paired` checks the second."""
    out: list[str] = []
    lit: set[int] = set()
    in_lights = False
    for index, (what, _event, value) in enumerate(events):
        if what.startswith("light"):
            number = int(what[5:])
            lit = lit | {number} if value else lit - {number}
            if in_lights:
                out[-1] = _lights(lit)
            else:
                out.append(_lights(lit))
            in_lights = True
            continue
        if what == "buzzer" and value[0] == ALERT_HZ and not (  # type: ignore[index]
                index + 1 < len(events) and events[index + 1][0] == "message"):
            continue  # an alert's second beep: it belongs to an earlier alert, not to this moment
        in_lights = False
        if what == "message":
            out.append(str(value))
        elif what == "buzzer":
            out.append("♪success" if value[0] == SUCCESS_HZ else "♪alert")  # type: ignore[index]
    return out


def alert_beeps_paired(events: list[tuple[str, str, object]]) -> bool:
    """Every alert was two beeps (after `Feedback.settle`), unless the success tone of a quick re-tap came
    before the second (it cuts it: an alert after the success would tell the shopper the wrong thing). Alerts
    may overlap (a decline, then at once the next sale's See phone): second beeps come in the same order."""
    waiting = 0  # alerts whose first beep sounded and their second not yet
    for index, (what, _event, value) in enumerate(events):
        if what != "buzzer":
            continue
        if value[0] == SUCCESS_HZ:  # type: ignore[index]
            waiting = 0
        elif index + 1 < len(events) and events[index + 1][0] == "message":
            waiting += 1
        elif waiting:
            waiting -= 1
        else:
            return False  # a second beep without a first, or after the success tone
    return waiting == 0


def _lights(lit: set[int]) -> str:
    return "lights " + ("".join(str(n) for n in sorted(lit)) or "-")
