"""Shared fixtures: one test world per session, copied per test that changes it; an acquirer loaded from it."""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import tallies
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import settings
from pcscd import Pcscd, running_pcscd
from pgcluster import pg_cluster  # noqa: F401 - the session's PostgreSQL cluster, started when a test asks
from robustness import secret_scan
from robustness.fuzzing import long_mode

from acquirer_stub.app import create_app
from acquirer_stub.instance import Instance
from acquirer_stub.loader import init_instance
from acquirer_stub.store import db
from firmware.issuing.build import create_world
from firmware.issuing.layout import World
from firmware.simulator.rig import SoftwareRig
from firmware.simulator.vpcd import Endpoint, VirtualSlot
from hardware.pn532 import Pn532Error, open_pn532
from terminal.journal.crashpoints import CRASH_POINTS


def pytest_addoption(parser: pytest.Parser) -> None:
    """The hardware-in-the-loop rig's options (tests/hil/README.md); here because pytest reads options only
    from the conftest files it loads first."""
    group = parser.getgroup("hil", "hardware-in-the-loop rig (tests/hil)")
    group.addoption("--rig", choices=("sim", "hw", "pcsc"), default="sim",
                    help="sim: two software PN532s in one virtual field (default); hw: two real PN532s; pcsc: the "
                         "terminal's PC/SC backend through a pcscd of its own and vsmartcard's virtual reader")
    group.addoption("--reader-port", default=None, help="hw: the terminal's PN532 (e.g. /dev/ttyAMA0)")
    group.addoption("--card-port", default=None, help="hw: the card-emulating PN532 (e.g. /dev/ttyUSB0)")
    group.addoption("--interface", default=None, metavar="hsu|i2c|spi[,…]",
                    help="the reader PN532's host interface(s); the catalogue runs whole on each one named "
                         "(default: hsu, and its link scenarios on i2c and spi, on sim; hsu on hw)")
    group.addoption("--i2c-hz", type=int, default=100_000, metavar="HZ",
                    help="sim: the I2C bus clock in the link model (100000, the Pi's default, or 400000)")
    group.addoption("--hil-report", default="var/hil-report", metavar="DIR",
                    help="where junit.xml and report.html go (default var/hil-report)")


@pytest.fixture(scope="session")
def world_template(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("world-template") / "world"
    create_world(root)
    return World.open(root)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[SoftwareRig]:
    """A software PN532 on a pseudo-terminal at tmp_path/pos, with an empty field."""
    rig = SoftwareRig([tmp_path / "pos"])
    yield rig
    rig.close()


@pytest.fixture
def pcscd(tmp_path: Path) -> Iterator[Pcscd]:
    """This test's own pcscd with vsmartcard's virtual reader (tests/pcscd.py)."""
    with running_pcscd(tmp_path / "pcscd") as running:
        yield running


@pytest.fixture
def vpcd_slot(pcscd: Pcscd) -> Iterator[VirtualSlot]:
    """The card side of that reader's first slot, empty until a test presents a card or phone."""
    slot = VirtualSlot(Endpoint("127.0.0.1", pcscd.port))
    yield slot
    slot.close()


@pytest.fixture
def world(world_template: World, tmp_path: Path) -> World:
    """A private copy: tests tap its cards and change counters freely."""
    root = tmp_path / "world"
    shutil.copytree(world_template.root, root)
    return World.open(root)


@pytest.fixture
def demo_ports() -> Iterator[None]:
    """The demo's fixed ports (8380-8382): one test at a time holds them, across pytest-xdist workers and
    checkouts (a lock file per user in the temporary folder)."""
    path = Path(tempfile.gettempdir()) / f"quickpass-demo-ports-{os.getuid()}.lock"
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture
def database_url() -> str:
    """The acquirer's database: "" = the SQLite file in its instance folder (tests/acquirer run on PostgreSQL too)."""
    return ""


@pytest.fixture
def instance(world: World, tmp_path: Path, database_url: str) -> Instance:
    """An acquirer instance folder with the private world copy loaded into its database."""
    return init_instance(tmp_path / "acquirer", world, database=database_url)[0]


@pytest.fixture
def connection(instance: Instance) -> Iterator[sqlite3.Connection]:
    """The test's own connection to the instance's database (either backend), to read what a request stored."""
    connection = db.connect(instance.database)
    yield connection
    connection.close()


@pytest.fixture
def app(instance: Instance) -> Flask:
    """The acquirer's Flask app on that instance, for the test client."""
    return create_app(instance.root, overrides={"TESTING": True})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# --- robustness (tests/robustness/README.md): hypothesis profiles, the end-of-session secret scan and summary ------
# "ci" is the default; `pytest tests/robustness --hypothesis-profile=long` is the overnight fuzzing run, with
# POS_FUZZ_EXAMPLES examples per test (100 000 unless set; docs/robustness.md ran it in seeded chunks).
settings.register_profile("ci", max_examples=100)
settings.register_profile("long", max_examples=int(os.environ.get("POS_FUZZ_EXAMPLES", "100000")), deadline=None)
settings.load_profile("ci")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(secret_scan.SessionScan(config), "quickpass-secret-scan")
    problem = _hil_options_problem(config)
    if problem:  # one line and exit status 4 (pytest's usage error), before anything is collected
        raise pytest.UsageError(problem)


def _hil_options_problem(config: pytest.Config) -> str | None:
    """What stops a HIL run before it starts: an unknown interface, or on --rig=hw a port that is missing or
    where no PN532 answers (instead of every scenario failing on it in turn)."""
    given = config.getoption("--interface")
    names = [name.strip() for name in (given or "hsu").split(",") if name.strip()]
    unknown = sorted(set(names) - {"hsu", "i2c", "spi"})
    if unknown or not names:
        return f"--interface: {', '.join(unknown) or 'nothing'} is not one of hsu, i2c, spi"
    if not 10_000 <= config.getoption("--i2c-hz") <= 400_000:
        return "--i2c-hz: the PN532's I2C runs at 10 kHz to 400 kHz (the Pi's default is 100000)"
    if config.getoption("--rig") != "hw":
        return None
    card_port, reader_port = config.getoption("--card-port"), config.getoption("--reader-port")
    ports = [("card", card_port, "--card-port", "the card-emulating PN532's USB–serial adapter, e.g. /dev/ttyUSB0")]
    if "hsu" in names:
        ports.insert(0, ("reader", reader_port, "--reader-port", "the terminal's PN532, e.g. /dev/ttyAMA0"))
    for role, port, option, example in ports:
        if not port:
            return f"--rig=hw needs {option}: {example}"
        problem = _no_pn532_on(port)
        if problem:
            return (f"--rig=hw: the {role} PN532 on {port}: {problem}; check the cable and the board's interface "
                    f"switches (HSU), or give the right {option} (ls /dev/serial/by-id/)")
    return None


def _no_pn532_on(port: str) -> str | None:
    if not os.path.exists(port):
        return "no such device"
    try:
        chip, interface = open_pn532(port)
    except Pn532Error as error:
        return str(error).split(": ", 1)[-1]
    try:
        return None if chip.getFirmwareVersion() else "no PN532 answers GetFirmwareVersion"
    finally:
        interface.close()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if secret_scan.is_xdist_worker(session.config):
        session.config.workeroutput["tallies"] = tallies.export()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """pytest-xdist: a worker ended; its counts join the controller's."""
    tallies.merge(getattr(node, "workeroutput", {}).get("tallies", {}))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    covered, inputs = tallies.CRASH_POINTS_COVERED, tallies.FUZZ_INPUTS
    if covered:
        terminalreporter.write_line(f"crash points covered: {len(covered)} of {len(CRASH_POINTS)}"
                                    f" ({', '.join(sorted(covered))})")
    if inputs:
        profile = settings.get_current_profile_name()
        terminalreporter.section(f"robustness: inputs tried (hypothesis profile {profile!r})")
        for target, count in sorted(inputs.items()):
            terminalreporter.line(f"{target:<44} {count:>9}")
        total = f"{'total':<44} {sum(inputs.values()):>9}"
        terminalreporter.line(total + ("  (long mode)" if long_mode() else ""))
