"""The end-of-session secret scan (secret_scan.py) can fail: planted PANs and track 2 in every form are found,
with file and offset; the world's own card files are not findings; and the acquirer's pages after real sales are
saved under basetemp so the session scan reads them too."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import secret_scan
from flask.testing import FlaskClient
from secret_scan import Scanner, pan_like_runs, scan_tree, world_bins, world_secrets

from acquirer_stub.app import create_app
from acquirer_stub.instance import Instance
from firmware.issuing.layout import World

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """Where the planted leaks go; removed after the test, or they would fail this very session's scan."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    yield folder
    shutil.rmtree(folder)


def _plant(tmp_path: Path, name: str, data: bytes) -> tuple[Path, int]:
    path = tmp_path / "out" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = b"journal page 1\x00\x01\x02 "
    path.write_bytes(prefix + data + b" end")
    return path, len(prefix)


def test_the_worlds_pans_and_token_pans_are_what_is_looked_for(world: World) -> None:
    secrets = world_secrets(world.root)
    pans = {card["pan"] for card in world.cards()}
    tokens = {token["token_pan"] for token in world.tsp()["tokens"]}
    assert pans | tokens == {secret.value for secret in secrets}
    assert len(pans) == 34 and tokens  # 32 issuers, the quasi-credit and the expired card


@pytest.mark.parametrize("form", ["digits", "hex text of 57", "packed 5A", "packed 57", "utf-16", "token"])
def test_a_planted_pan_is_found_with_its_file_and_offset(world: World, scratch: Path, form: str) -> None:
    entry = next(card for card in world.cards() if card["issuer"] == "icbc-debit")
    pan = entry["pan"]
    track2 = f"{pan}D{entry['expiry'][2:4]}{entry['expiry'][5:7]}2201234500000"
    data = {
        "digits": f"pan={pan}".encode(),
        "hex text of 57": track2.lower().encode(),
        "packed 5A": bytes.fromhex(pan),
        "packed 57": bytes.fromhex(track2 + "F" * (len(track2) % 2)),
        "utf-16": f"pan {pan}".encode("utf-16-le"),
        "token": world.tsp()["tokens"][0]["token_pan"].encode(),
    }[form]
    path, offset = _plant(scratch, "leak.bin", data)
    findings = scan_tree(scratch, Scanner(world_secrets(world.root)))
    assert [f.where for f in findings] == [str(path)]
    (finding,) = findings
    expected_offset = offset + {"digits": 4, "utf-16": 8}.get(form, 0)
    assert finding.offset == expected_offset
    assert ("(track 2)" in finding.what) is form.endswith("57")
    assert pan not in str(finding)  # the report itself shows the PAN masked
    assert ("token PAN" in finding.what) is (form == "token")


def test_a_card_number_of_the_worlds_issuers_is_found_standing_alone_in_text(world: World) -> None:
    """The report check (tests/hil/test_hil_report.py): any Luhn-valid number with a world BIN, even one that is
    not on file, standing alone in either case of hex; not a masked PAN, not digits inside a longer hex field
    (an unpredictable number or a cryptogram that happens to be all digits: the old check failed by chance)."""
    bins = world_bins(world.root)
    pan = world.cards()[0]["pan"]
    other = pan[:-2] + next(d + c for d in "0123456789" for c in "0123456789"
                            if d + c != pan[-2:] and secret_scan.luhn_valid(pan[:-2] + d + c))
    assert secret_scan.luhn_valid(pan) and other != pan
    assert pan_like_runs(f"PAN {pan} and <td>{other}</td>", bins) == [pan, other]
    assert pan_like_runs(f"5A08{pan}5F24", bins) == []  # inside a longer hex field
    assert pan_like_runs(f"ab{pan}cd and {pan[:6]}******{pan[-4:]}", bins) == []
    not_luhn = pan[:-1] + str((int(pan[-1]) + 1) % 10)
    assert pan_like_runs(not_luhn, bins) == []
    no_bin = "9" * 6 + pan[6:-1]
    assert pan_like_runs(no_bin + next(d for d in "0123456789" if secret_scan.luhn_valid(no_bin + d)), bins) == []


def test_masked_pans_hashes_and_the_worlds_own_card_files_are_not_findings(world: World, tmp_path: Path) -> None:
    pan = world.cards()[0]["pan"]
    _plant(tmp_path, "receipt.txt", f"Card {pan[:6]}******{pan[-4:]} BIN {pan[:6]} last {pan[-4:]}".encode())
    copy = tmp_path / "copied-card.json"  # a card file copied out of a world is the simulated card itself
    shutil.copy(world.path(Path(world.cards()[0]["file"])), copy)
    assert pan.encode() in copy.read_bytes() and pan.encode() in (world.root / "cards" / "index.json").read_bytes()
    assert scan_tree(tmp_path, Scanner(world_secrets(world.root))) == []
    leak = world.root / "terminal-journal.log"  # inside a world, but not its card memory
    leak.write_text(f"sale {pan}\n")
    try:
        (finding,) = scan_tree(tmp_path, Scanner(world_secrets(world.root)))
    finally:
        leak.unlink()
    assert finding.where.endswith("terminal-journal.log") and finding.offset == 5


@pytest.mark.parametrize("processes", [["-p", "no:xdist"], ["-n", "2"]], ids=["one-process", "xdist"])
def test_a_session_that_leaks_fails_and_names_the_file(scratch: Path, processes: list[str]) -> None:
    """A whole pytest session in a subprocess whose only test writes a world card's PAN to a log file: the
    session's exit status is 1 although the test passed, and the summary names the file. Under pytest-xdist
    (./scripts/test) the controller scans the workers' folders and their captured output."""
    project = scratch / "project"
    (project / "tests").mkdir(parents=True)
    (project / "tests" / "conftest.py").write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT / "tests" / "robustness")!r})
        import secret_scan

        def pytest_configure(config):
            config.pluginmanager.register(secret_scan.SessionScan(config), "quickpass-secret-scan")
    """))
    (project / "tests" / "test_leak.py").write_text(textwrap.dedent("""
        import json

        def test_leaks(tmp_path):
            world = tmp_path / "world"
            (world / "cards").mkdir(parents=True)
            (world / "WORLD.json").write_text("{}")
            (world / "cards" / "index.json").write_text(json.dumps({"cards": [{"pan": "6210010504343148"}]}))
            (tmp_path / "terminal.log").write_text("approved 6210010504343148\\n")
            print("stdout is scanned too: 6210010504343148")
    """))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *processes, "tests",
                             f"--basetemp={scratch / 'base'}"], cwd=project, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed" in result.stdout and "secret scan: full PAN / track 2 found" in result.stdout
    assert re.search(r"terminal\.log @ byte 9: PAN 621001\*{6}3148 as ASCII digits", result.stdout)
    assert "test_leaks [Captured stdout call] @ byte 23" in result.stdout
    assert "6210010504343148" not in result.stdout
    assert (scratch / "base").is_dir()


def test_the_acquirer_pages_after_real_sales_are_saved_for_the_scan(
    instance: Instance, world: World, tmp_path: Path
) -> None:
    """The dashboard pages after three approvals, written under basetemp: the session scan reads them."""
    sys.path.insert(0, str(ROOT / "tests" / "acquirer"))
    from test_api import Terminal, financial  # the acquirer tests' signed terminal

    app = create_app(instance.root, overrides={"TESTING": True})
    client: FlaskClient = app.test_client()
    terminal = Terminal(client, world)
    batch = terminal.sign_on()
    for issuer in ("icbc-debit", "cmb-credit", "jsb-credit"):
        assert terminal.post("/authorizations", financial(terminal, world, issuer, 12_34, batch)).json["rc"] == "00"
    operator = next(u for u in world.users() if u["role"] == "operator")
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/login", data={"username": operator["username"], "password": operator["password"],
                                "csrf_token": token})
    pages = tmp_path / "pages"
    pages.mkdir()
    saved = 0
    for rule in app.url_map.iter_rules():
        if "GET" in rule.methods and not rule.arguments and rule.endpoint != "dashboard.feed_stream" \
                and not rule.rule.startswith("/static"):
            answer = client.get(rule.rule)
            (pages / (rule.endpoint.replace(".", "_") + ".html")).write_bytes(answer.get_data())
            saved += 1
    for row in range(1, 5):
        (pages / f"tx-{row}.html").write_bytes(client.get(f"/dashboard/tx/{row}").get_data())
    icbc = next(c["pan"] for c in world.cards() if c["issuer"] == "icbc-debit")
    text = b"".join(p.read_bytes() for p in pages.iterdir()).decode("utf-8", "replace")
    assert saved > 5 and f"{icbc[:6]}" in text and icbc[-4:] in text  # the sales are on the pages, masked
    assert scan_tree(tmp_path, Scanner(world_secrets(world.root))) == []
    assert secret_scan.find_worlds(tmp_path) == [world.root]
    assert json.loads((world.root / "WORLD.json").read_text())["test_only"]
