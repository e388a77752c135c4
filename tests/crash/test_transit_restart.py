"""Issue #5: the software PSAM's torn-purchase memory survives a terminal restart.

A fare torn after DEBIT may have been paid. The PSAM remembers that purchase in the journal's SQLite file,
committed before the DEBIT leaves, so the first tap of that card after a restart asks GET TRANSACTION PROVE and
completes the old fare instead of charging again; a purchase torn before the DEBIT is found "not found" and
charged once. Real restarts: the `pos-terminal fare` process SIGKILLed at a crash point, and a fresh `Psam` and
journal over the same files.
"""

from __future__ import annotations

import datetime
import json
import signal
from pathlib import Path

from crashkit import Terminal
from tallies import CRASH_POINTS_COVERED

from acquirer_stub.instance import Instance
from acquirer_stub.store import db
from emvcore.apdu import CommandApdu
from firmware.apps.cards.cardfile import PlainCard
from firmware.issuing.layout import World
from firmware.simulator.rig import SoftwareRig
from terminal.journal.journal import SCHEMA_VERSION, Journal
from terminal.kernel.errors import CardGone
from terminal.kernel.outcome import Outcome
from terminal.kernel.transit import Psam, fare

FARE = 200
PSAM_ID = b"000001"


def _transit_card(world: World) -> Path:
    return world.path(Path("transit/shanghai.json"))


def _balance(card: Path) -> int:
    return int(json.loads(card.read_text())["applications"][0]["state"]["balance"])


def _masters(world: World) -> dict[str, bytes]:
    cities = json.loads(world.path(Path("transit/keys.json")).read_text())["cities"]
    return {c["city_code"]: bytes.fromhex(c["purchase_master_key"]) for c in cities}


def test_fare_killed_after_the_debit_is_completed_by_prove_after_restart_never_charged_twice(
    terminal: Terminal, rig: SoftwareRig
) -> None:
    card = _transit_card(terminal.world)
    before = _balance(card)
    rig.present(card)
    killed = terminal.run("fare", "2.00", "--json", "--wait", "10", crash_at="fare.debited")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _balance(card) == before - FARE  # the card paid; the terminal died before it could say so

    restarted = terminal.run("fare", "2.00", "--json", "--wait", "10")
    assert restarted.returncode == 0, restarted.stderr
    result = restarted.json()
    assert (result["outcome"], result["recovered"], result["amount"]) == ("Approved", True, FARE)
    assert _balance(card) == before - FARE  # completed by GET TRANSACTION PROVE: charged once

    again = terminal.run("fare", "2.00", "--json", "--wait", "10")  # the next ride is a new fare
    assert again.returncode == 0 and again.json()["recovered"] is False
    assert _balance(card) == before - 2 * FARE
    with Journal.open(terminal.journal) as journal:  # two rides, two records for transit clearing, each with its TAC
        fares = journal.transit_memory(PSAM_ID).fares()
    assert [(f["amount"], f["tac"]) for f in fares] == [(FARE, result["tac"]), (FARE, again.json()["tac"])]
    assert fares[0]["offline_serial"] != fares[1]["offline_serial"] and journal_free_of_torn(terminal)
    CRASH_POINTS_COVERED["fare.debited"] += 1


def journal_free_of_torn(terminal: Terminal) -> bool:
    with Journal.open(terminal.journal) as journal:
        return journal.transit_memory(PSAM_ID).torn_count() == 0


def test_fare_killed_before_the_debit_is_charged_once_after_restart(terminal: Terminal, rig: SoftwareRig) -> None:
    card = _transit_card(terminal.world)
    before = _balance(card)
    rig.present(card)
    killed = terminal.run("fare", "2.00", "--json", "--wait", "10", crash_at="fare.torn_saved")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _balance(card) == before
    with Journal.open(terminal.journal) as journal:  # the terminal's PSAM id: the last six characters of its TID
        assert journal.transit_memory(PSAM_ID).torn_count() == 1  # the possibly torn purchase is on disk
        assert journal.transit_memory(b"\x00" * 6).torn_count() == 0  # memory is per PSAM terminal id

    restarted = terminal.run("fare", "2.00", "--json", "--wait", "10")
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.json()["recovered"] is False  # PROVE: not found, so the fare is charged now, once
    assert _balance(card) == before - FARE
    with Journal.open(terminal.journal) as journal:
        assert journal.transit_memory(PSAM_ID).torn_count() == 0
    CRASH_POINTS_COVERED["fare.torn_saved"] += 1


def test_a_torn_purchase_and_the_serial_survive_a_fresh_psam_on_the_same_journal(
    world: World, tmp_path: Path
) -> None:
    path = world.path(Path("transit/shanghai.json"))
    card = PlainCard.load(path)
    chip = card.chip()
    before = _balance(path)
    debits = 0

    def torn_after_debit(apdu: bytes) -> bytes:
        nonlocal debits
        answer = chip.transceive(apdu)
        if CommandApdu.decode(apdu).ins == 0x54:  # DEBIT FOR PURCHASE: the card debits, the answer is lost
            debits += 1
            card.save()
            raise CardGone("card left the field")
        card.save()
        return answer

    journal_path = tmp_path / "journal.sqlite3"
    now = datetime.datetime.now()
    with Journal.open(journal_path) as journal:
        psam = Psam(_masters(world), PSAM_ID, memory=journal.transit_memory(PSAM_ID))
        first = fare(torn_after_debit, psam, FARE, now)
    assert first.outcome != Outcome.APPROVED and debits == 1
    assert _balance(path) == before - FARE
    serial_used = int.from_bytes(first.terminal_serial or b"", "big")

    # the restart: nothing carried over in memory, only the journal file
    with Journal.open(journal_path) as journal:
        psam = Psam(_masters(world), PSAM_ID, memory=journal.transit_memory(PSAM_ID))
        assert psam.serial == serial_used  # a terminal serial is never issued twice
        chip = PlainCard.load(path).chip()
        recovered = fare(chip.transceive, psam, FARE, now)
        assert (recovered.outcome, recovered.recovered) == (Outcome.APPROVED, True)
        assert recovered.terminal_serial == first.terminal_serial and recovered.tac
        assert journal.transit_memory(PSAM_ID).torn_count() == 0
    assert _balance(path) == before - FARE  # charged once
    wal = Path(f"{journal_path}-wal")
    stored = journal_path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    for key in _masters(world).values():
        assert key.hex().upper().encode() not in stored and key not in stored  # no PSAM key on disk


def test_a_journal_from_before_the_psam_memory_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    with Journal.open(path) as journal:  # as an older terminal left it: schema 1, one sale in flight
        journal._db.execute("DROP TABLE psam_torn")
        journal._db.execute("DROP TABLE psam_serials")
        journal._db.execute("DROP TABLE transit_fares")
        journal._db.execute("DROP TABLE transit_loads")
        journal._db.execute("PRAGMA user_version = 1")
        stan = journal.next_stan()
        journal.begin_sale(stan, journal.today(), 1_00, {"tid": "QP000001", "mti": "0200"})
    with Journal.open(path) as journal:
        assert journal._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
        memory = journal.transit_memory(PSAM_ID)
        memory.store_serial(7)
        assert memory.serial() == 7 and memory.torn_count() == 0 and memory.fares() == []
        assert memory.clearing_counts() == {"waiting": 0, "cleared": 0, "refused": 0}
        assert [e.stan for e in journal.entries()] == [stan]  # nothing of the old journal lost


def test_a_completed_fare_is_recorded_once_and_clears_its_torn_purchase(tmp_path: Path) -> None:
    card_number = "2900020000000001"
    record = {"card_number": card_number, "offline_serial": 5, "amount": FARE, "tac": "0A0B0C0D"}
    with Journal.open(tmp_path / "journal.sqlite3") as journal:
        memory = journal.transit_memory(PSAM_ID)
        memory.remember_torn(card_number, {"card_number": card_number, "offline_serial": 5})
        memory.complete(card_number, record)
        memory.complete(card_number, {**record, "tac": "FFFFFFFF"})  # the same purse transaction again: kept once
        assert memory.torn_count() == 0 and memory.fares() == [record]
        assert journal.transit_memory(b"OTHER1").fares() == []  # per PSAM


def test_settle_killed_after_transit_clearing_answered_sends_the_fares_again_as_repeats(
    terminal: Terminal, rig: SoftwareRig, instance: Instance
) -> None:
    card = _transit_card(terminal.world)
    for _ in range(2):
        rig.present(card)
        assert terminal.run("fare", "2.00", "--json", "--wait", "10").returncode == 0
        rig.remove()
    killed = terminal.run("settle", crash_at="fare.clearing_answered")  # cleared on the acquirer, not in the journal
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with Journal.open(terminal.journal) as journal:
        assert journal.transit_memory(PSAM_ID).clearing_counts() == {"waiting": 2, "cleared": 0, "refused": 0}

    again = terminal.run("settle")
    assert again.returncode == 0, again.stderr
    assert "transit clearing: 0 fare(s) cleared, 2 already cleared, 0 refused, 0 waiting" in again.stdout
    with Journal.open(terminal.journal) as journal:
        assert journal.transit_memory(PSAM_ID).clearing_counts() == {"waiting": 0, "cleared": 2, "refused": 0}
    connection = db.connect(instance.database)
    try:  # each fare once on the acquirer's side, for the amount the card paid
        assert [tuple(r) for r in connection.execute("SELECT amount, psam FROM transit_fares")] == [
            (FARE, PSAM_ID.hex().upper())] * 2
    finally:
        connection.close()
    CRASH_POINTS_COVERED["fare.clearing_answered"] += 1
