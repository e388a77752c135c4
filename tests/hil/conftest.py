"""Fixtures of the hardware-in-the-loop suite and its reports (JUnit XML and one self-contained HTML file).

The options (--rig, --reader-port, --card-port, --interface, --hil-report) are declared in tests/conftest.py,
because pytest reads options only from the conftest files it loads first; so is the check that stops a
`--rig=hw` run at once when a port cannot be reached.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hil_bench import Bench
from hil_host import TappedHostServer
from hil_report import COLLECTOR, ScenarioResult
from hil_rig import HwRig, PcscRig, Rig, SimRig, interfaces
from hil_scenarios import CATALOGUE
from hil_trace import TAP, RecordingSerial, Trace
from pcscd import Pcscd, running_pcscd

import hardware.pn532
from acquirer_stub.app import create_app
from acquirer_stub.instance import Instance
from firmware.issuing.layout import World
from firmware.issuing.provisioning import add_card_to_wallet

EXTRA_PHONE_CARDS = ("icbc-debit", "ccb-debit", "abc-credit", "cmb-credit", "pab-credit", "citic-credit",
                     "spdb-credit")
"""Seven more cards for the demo phone (it holds the Bank of China credit token): a full wallet of eight."""


@pytest.fixture(scope="session")
def world_template(world_template: World, tmp_path_factory: pytest.TempPathFactory) -> World:
    """The test world with a full phone: eight tokenized cards, the Bank of China credit card the default.
    It overrides the suite's template, so the `world` and `instance` fixtures copy this one."""
    root = tmp_path_factory.mktemp("hil-world") / "world"
    shutil.copytree(world_template.root, root)
    world = World.open(root)
    for issuer in EXTRA_PHONE_CARDS:
        entry = next(c for c in world.cards() if c["issuer"] == issuer)
        add_card_to_wallet(root, world.demo_phone, world.path(Path(entry["file"])), issuer)
    return World.open(root)


@pytest.fixture
def trace(request: pytest.FixtureRequest) -> Trace:
    return Trace(request.node.callspec.id if hasattr(request.node, "callspec") else request.node.name)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The catalogue on every interface --interface names; left to its default, the first interface runs it whole
    and the others its `link` scenarios (the rest hang on the kernel and the host alone). Other tests: the first."""
    if "interface" not in metafunc.fixturenames:
        return
    chosen = interfaces(metafunc.config)
    if metafunc.function.__name__ != "test_scenario":
        metafunc.parametrize("interface", chosen[:1])
        return
    whole = metafunc.config.getoption("--interface") is not None
    pairs = [(interface, scenario) for interface in chosen for scenario in CATALOGUE
             if whole or interface == chosen[0] or scenario.link]
    metafunc.parametrize(("interface", "scenario"), pairs, ids=[f"{i}-{s}" for i, s in pairs])


@pytest.fixture(scope="session")
def session_pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pcscd]:
    """--rig=pcsc: one pcscd for the whole run (pcscd's socket is the machine's: one at a time)."""
    with running_pcscd(tmp_path_factory.mktemp("pcscd")) as running:
        yield running


@pytest.fixture
def rig(request: pytest.FixtureRequest, trace: Trace, tmp_path: Path, interface: str) -> Iterator[Rig]:
    config = request.config
    built: Rig
    if config.getoption("--rig") == "hw":  # the ports were checked at start (tests/conftest.py)
        built = HwRig(config.getoption("--reader-port"), config.getoption("--card-port"), trace, interface)
    elif config.getoption("--rig") == "pcsc":
        built = PcscRig(request.getfixturevalue("session_pcscd"), trace)
    else:
        built = SimRig(tmp_path, trace, interface, config.getoption("--i2c-hz"))
    yield built
    built.close()


@pytest.fixture
def bench(world: World, instance: Instance, rig: Rig, trace: Trace, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Bench]:
    """Everything a scenario needs, with its UART lines, host calls and APDUs going to `trace`."""
    monkeypatch.setattr(hardware.pn532, "Serial", RecordingSerial)  # the real port, observed
    card_port = rig.card.port
    TAP.watch(trace, {port: role for port, role in ((rig.reader_port, "reader"), (card_port, "card")) if port})
    app = create_app(instance.root, overrides={"TESTING": True})
    host = TappedHostServer(app, lambda line: trace.add("host", line))
    host.start()
    folder = tmp_path / "terminal"
    folder.mkdir()
    try:
        yield Bench(world, instance, host, rig, trace, folder)
        assert not rig.card.errors, f"the card emulator failed: {rig.card.errors}"
    finally:
        rig.card.remove()
        TAP.stop()
        if host.running:
            host.stop()
        trace.modelled.update({k: v for k, v in rig.modelled().items() if v})
        COLLECTOR.pans = sorted({c["pan"] for c in world.cards()}
                                | {t["token_pan"] for t in world.tsp()["tokens"]} | set(COLLECTOR.pans))


# -- reports --------------------------------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    trace = item.funcargs.get("trace") if hasattr(item, "funcargs") else None
    if report.when == "call" or (report.when == "setup" and not report.passed) or (
            report.when == "teardown" and report.failed):
        COLLECTOR.record(ScenarioResult.from_report(item, report, trace if isinstance(trace, Trace) else None))


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not COLLECTOR.results:
        return
    folder = Path(session.config.getoption("--hil-report"))
    if not folder.is_absolute():
        folder = Path(session.config.rootpath) / folder
    if "PYTEST_XDIST_WORKER" in os.environ:  # a parallel run (./scripts/test): each worker reports its scenarios
        folder /= os.environ["PYTEST_XDIST_WORKER"]
    written = COLLECTOR.write(folder, rig=session.config.getoption("--rig"))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"hil reports: {', '.join(str(path) for path in written)}")
