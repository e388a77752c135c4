"""The command lines: `pos-card` end to end on a test world, and the installed entry points' help.

Most runs call `firmware.cli.main` in-process (fast); a few run the console scripts in the virtualenv's bin
folder to prove they are installed and behave the same from a real process.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from reader import terminal_data

from emvcore import tlv
from emvcore.dol import build_dol_data
from firmware.apps.wallet.wallet import Wallet
from firmware.cli import main
from firmware.issuing.layout import World

BIN = Path(sys.executable).parent
PPSE_HEX = "00A404000E325041592E5359532E444446303100"
SELECT_CREDIT_HEX = "00A4040008A00000033301010200"
DEBIT_AID_HEX, CREDIT_AID_HEX, TRANSIT_AID_HEX = "A000000333010101", "A000000333010102", "A000000632010105"
# The PDOL UnionPay qPBOC cards ask for (emv-qpboc.md §2.3): TTQ, amounts, country, TVR, currency, date, type, UN.
PDOL = bytes.fromhex("9F66049F02069F03069F1A0295055F2A029A039C019F3704")


def _gpo_hex(amount: int) -> str:
    data = tlv.encode(0x83, build_dol_data(PDOL, terminal_data(amount)))
    return f"80A80000{len(data):02X}{data.hex().upper()}00"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _script(name: str, *argv: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    executable = BIN / name
    assert executable.is_file(), f"{executable} is not installed (pip install -e .)"
    return subprocess.run(
        [str(executable), *argv], capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False
    )


def _card_file(world: World, issuer: str) -> str:
    return str(world.path(Path(next(c for c in world.cards() if c["issuer"] == issuer)["file"])))


def _ppse_aids(output: str) -> list[str]:
    return re.findall(r"4F Application Identifier \(AID\) - card \[\d+\]: ([0-9A-F]+)", output)


# -- entry points and help -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("script", "expected"), [
    ("pos-card", ["world", "apdu", "fingerprint", "wallet", "card side"]),
    ("pos-terminal", ["point-of-sale terminal", "--config"]),
    ("acquirer-stub", ["token service", "init", "serve"]),
])
def test_installed_console_scripts_answer_help(tmp_path: Path, script: str, expected: list[str]) -> None:
    result = _script(script, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {script} ")
    for word in expected:
        assert word in result.stdout


def test_module_help_and_wallet_help_list_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "firmware.cli", "--help"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0
    for command in ("world", "apdu", "fingerprint", "wallet"):
        assert re.search(rf"^\s+{command}\s+\S", result.stdout, re.MULTILINE), command
    with pytest.raises(SystemExit) as exit_:
        main(["wallet", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for action in ("list", "default", "choose", "add", "remove"):
        assert re.search(rf"^\s+{action}\s", out, re.MULTILINE), action


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2
    assert "usage: pos-card" in capsys.readouterr().err


# -- pos-card world ------------------------------------------------------------------------------------------------


def test_world_force_replaces_a_world_and_prints_the_demo_phone_last(world: World, tmp_path: Path) -> None:
    old_wallet_id = json.loads(world.demo_phone.read_text())["wallet_id"]
    old_token_imk = world.tsp()["token_imk"]
    result = _script("pos-card", "world", str(world.root), "--force", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    phone = Path(result.stdout.strip().splitlines()[-1])
    assert phone == world.root.resolve() / "phones" / "demo-phone.json"
    assert phone.is_file()
    replaced = World.open(world.root)
    assert Wallet.load(phone).wallet_id != old_wallet_id
    assert replaced.tsp()["token_imk"] != old_token_imk
    assert not [p for p in world.root.parent.iterdir() if p.name.startswith(f".{world.root.name}.")]  # no staging


def test_world_refuses_to_overwrite_a_world_without_force(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    before = world.demo_phone.read_bytes()
    code, out, err = _run(capsys, "world", str(world.root))
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("pos-card: ")
    assert "already holds a test world" in err and "--force" in err
    assert world.demo_phone.read_bytes() == before


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["plain", "force"])
def test_world_refuses_a_folder_that_is_not_a_world(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], force: list[str]
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.txt").write_text("keep me\n")
    code, _, err = _run(capsys, "world", str(folder), *force)
    assert code == 1
    assert "is not empty and is not a test world" in err and err.count("\n") == 1
    assert [p.name for p in folder.iterdir()] == ["holiday.txt"]
    assert (folder / "holiday.txt").read_text() == "keep me\n"
    assert [p.name for p in tmp_path.iterdir()] == ["photos"]


def test_world_given_a_file_fails_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("not a folder\n")
    code, _, err = _run(capsys, "world", str(target))
    assert code == 1
    assert err.startswith("pos-card: ") and err.count("\n") == 1
    assert str(target) in err
    assert target.read_text() == "not a folder\n"


# -- pos-card apdu ---------------------------------------------------------------------------------------------------


def test_apdu_ppse_on_the_demo_phone(world_template: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "apdu", "--present", str(world_template.demo_phone), PPSE_HEX)
    assert code == 0
    assert re.search(r"^-- card in field, UID 08[0-9A-F]{6}$", out, re.MULTILINE)
    assert "<< SW 9000" in out
    assert _ppse_aids(out) == [CREDIT_AID_HEX, TRANSIT_AID_HEX]
    assert out.rstrip().endswith("-- card removed")


def test_apdu_refuses_text_that_is_not_hex(world_template: World) -> None:
    with pytest.raises(SystemExit, match="not hexadecimal"):
        main(["apdu", "--present", str(world_template.demo_phone), "00A4ZZ"])


def test_no_output_shows_a_full_pan(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    phone = str(world.demo_phone)
    outputs = [
        _run(capsys, "wallet", "add", phone, "--world", str(world.root), "--card", _card_file(world, "icbc-debit"),
             "--id", "icbc"),
        _run(capsys, "wallet", "list", phone),
        _run(capsys, "apdu", "--present", phone, PPSE_HEX),
        _run(capsys, "fingerprint", phone, "--finger", world.demo_fingers[0]),
    ]
    code, gpo_out, gpo_err = _run(capsys, "apdu", "--present", phone, SELECT_CREDIT_HEX, _gpo_hex(1234))
    outputs.append((code, gpo_out, gpo_err))
    assert all(code == 0 for code, _, _ in outputs), outputs
    # the GPO really answered with the token (masked), so the check below is not vacuous
    assert gpo_out.count("<< SW 9000") == 2
    assert "9F26 Application Cryptogram" in gpo_out
    wallet_id = json.loads(world.demo_phone.read_text())["wallet_id"]
    tokens = [t["token_pan"] for t in world.tsp()["tokens"] if t["wallet_id"] == wallet_id]
    assert len(tokens) == 2
    demo_token = next(t for t in world.tsp()["tokens"] if t["card_id"] == "boc-credit")["token_pan"]
    assert f"{demo_token[:6]}******{demo_token[-4:]}" in gpo_out

    pans = tokens + [c["pan"] for c in world.cards()]
    for _, out, err in outputs:
        text = out + err
        squeezed = re.sub(r"\s", "", text)
        for pan in pans:
            assert pan not in text and pan not in squeezed, f"full PAN {pan[:6]}… printed"


# -- pos-card wallet and fingerprint ---------------------------------------------------------------------------------


def test_wallet_commands_end_to_end(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    phone = str(world.demo_phone)
    code, out, _ = _run(capsys, "wallet", "add", phone, "--world", str(world.root),
                        "--card", _card_file(world, "icbc-debit"), "--id", "icbc")
    assert code == 0 and out.startswith("added icbc: ICBC Debit")

    code, out, _ = _run(capsys, "wallet", "list", phone)
    assert code == 0
    assert "(2/8 payment cards)" in out
    assert re.search(r"^\s+boc-credit .*\[default\]$", out, re.MULTILINE)
    assert re.search(r"^\s+icbc .*ATC 0$", out, re.MULTILINE)
    assert re.search(r"^\s+shanghai-transit .*¥50\.00\s+\[express\]$", out, re.MULTILINE)

    assert _run(capsys, "wallet", "default", phone, "icbc")[0] == 0
    out = _run(capsys, "wallet", "list", phone)[1]
    assert re.search(r"^\s+icbc .*\[default\]$", out, re.MULTILINE)
    assert _ppse_aids(_run(capsys, "apdu", "--present", phone, PPSE_HEX)[1]) == [
        DEBIT_AID_HEX, CREDIT_AID_HEX, TRANSIT_AID_HEX
    ]

    code, out, _ = _run(capsys, "wallet", "choose", phone, "boc-credit")
    assert code == 0 and "next tap pays with: boc-credit" in out
    assert re.search(r"^\s+boc-credit .*\[next tap\]$", _run(capsys, "wallet", "list", phone)[1], re.MULTILINE)
    assert _ppse_aids(_run(capsys, "apdu", "--present", phone, PPSE_HEX)[1])[0] == CREDIT_AID_HEX

    code, out, _ = _run(capsys, "wallet", "remove", phone, "icbc")
    assert code == 0 and "removed icbc" in out
    out = _run(capsys, "wallet", "list", phone)[1]
    assert "(1/8 payment cards)" in out and "icbc" not in out
    assert re.search(r"^\s+boc-credit .*\[default, next tap\]$", out, re.MULTILINE)


@pytest.mark.parametrize(("argv", "message"), [
    (["wallet", "default", "{phone}", "nope"], "no payment card 'nope' in this wallet"),
    (["wallet", "choose", "{phone}", "nope"], "no payment card 'nope' in this wallet"),
    (["wallet", "remove", "{phone}", "nope"], "no payment card 'nope' in this wallet"),
    (["wallet", "add", "{phone}", "--world", "{world}", "--card", "{transit}", "--id", "metro"], "not a bank card"),
    (["wallet", "add", "{phone}", "--world", "{world}", "--card", "{boc}", "--id", "boc-credit"],
     "'boc-credit' is already in this wallet"),
    (["wallet", "add", "{phone}", "--world", "{phone}", "--card", "{boc}", "--id", "x"], "WORLD.json"),
], ids=["default", "choose", "remove", "transit-card", "same-id", "not-a-world"])
def test_wallet_commands_refuse_with_one_line(
    world: World, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    names = {
        "phone": str(world.demo_phone), "world": str(world.root), "boc": _card_file(world, "boc-debit"),
        "transit": str(world.path(Path(world.transit_cards()[0]["file"]))),
    }
    before = world.demo_phone.read_bytes()
    code, _, err = _run(capsys, *(arg.format(**names) for arg in argv))
    assert code == 1
    assert err.startswith("pos-card: ") and err.count("\n") == 1
    assert message in err
    assert world.demo_phone.read_bytes() == before


def test_fingerprint_command_right_and_wrong_finger(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    phone = str(world.demo_phone)
    code, out, _ = _run(capsys, "fingerprint", phone, "--finger", world.demo_fingers[1])
    assert code == 0 and "fingerprint accepted: pay within 60 s" in out
    assert "fingerprint: verified" in _run(capsys, "wallet", "list", phone)[1]

    code, out, err = _run(capsys, "fingerprint", phone, "--finger", "left-little")
    assert code == 1 and "not recognised" in err and "accepted" not in out
    assert "fingerprint: not verified" in _run(capsys, "wallet", "list", phone)[1]
    # the closed window really stops a payment: GPO is "see phone"
    out = _run(capsys, "apdu", "--present", phone, SELECT_CREDIT_HEX, _gpo_hex(100))[1]
    assert "<< SW 6986" in out


# -- corrupt files ----------------------------------------------------------------------------------------------------


def _break_json(path: Path) -> str:
    path.write_text(path.read_text()[:-40])
    return "not valid JSON"


def _break_atc(path: Path) -> str:
    data = json.loads(path.read_text())
    data["cards"][0]["state"]["atc"] = "12"
    path.write_text(json.dumps(data))
    return "cards[0].state.atc: must be an integer"


def _break_owner(path: Path) -> str:
    data = json.loads(path.read_text())
    data["owner"] = ["Zhang", "Wei"]
    path.write_text(json.dumps(data))
    return "owner: must be a string"


@pytest.mark.parametrize("corrupt", [_break_json, _break_atc, _break_owner], ids=["json", "atc", "owner"])
@pytest.mark.parametrize("command", [
    ["wallet", "list", "{phone}"],
    ["wallet", "default", "{phone}", "boc-credit"],
    ["fingerprint", "{phone}"],
    ["apdu", "--present", "{phone}", PPSE_HEX],
], ids=["list", "default", "fingerprint", "apdu"])
def test_a_corrupt_wallet_gives_a_one_line_error_naming_file_and_field(
    world: World, capsys: pytest.CaptureFixture[str], corrupt: Callable[[Path], str], command: list[str]
) -> None:
    message = corrupt(world.demo_phone)
    code, out, err = _run(capsys, *(arg.format(phone=world.demo_phone) for arg in command))
    assert code == 1
    assert out == ""
    assert err.startswith(f"pos-card: {world.demo_phone}: ")
    assert err.count("\n") == 1
    assert message in err


def test_a_corrupt_wallet_in_a_real_process_gives_no_traceback(world: World, tmp_path: Path) -> None:
    message = _break_atc(world.demo_phone)
    result = _script("pos-card", "wallet", "list", str(world.demo_phone), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"pos-card: {world.demo_phone}: ")
    assert result.stderr.count("\n") == 1 and message in result.stderr
