"""terminal.toml: the world's file loads as written; every mistake names its key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from emvcore.qpboc import CREDIT_AID, DEBIT_AID, QUASI_CREDIT_AID
from firmware.issuing.layout import World
from terminal.config import ConfigError, FeedbackPins, Limits, ReaderConfig, Tones, load_config
from terminal.kernel.params import AidLimits

BASE = """\
[terminal]
id = "QP000001"
merchant_id = "898310054110001"
country = "0156"
currency = "0156"

[host]
url = "http://127.0.0.1:8380"
key = "{key}"

[capk]
file = "capk.json"

[ecr]
secret = "Zm9vYmFyLXRoZS1sb2NhbC1yZWdpc3RlcnMtc2VjcmV0"
"""
KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
SECRET = "Zm9vYmFyLXRoZS1sb2NhbC1yZWdpc3RlcnMtc2VjcmV0"


def _write(folder: Path, text: str) -> Path:
    (folder / "capk.json").write_text("{}")
    path = folder / "terminal.toml"
    path.write_text(text)
    return path


def test_the_worlds_terminal_toml_loads_as_is(world: World) -> None:
    config = load_config(world.root / "terminal.toml")
    assert (config.terminal.id, config.terminal.merchant_id) == ("QP000001", "898310054110001")
    assert (config.terminal.country, config.terminal.currency) == ("0156", "0156")
    assert config.host.url == "http://127.0.0.1:8380"
    terminals = world.path(Path("acquirer/terminals.json")).read_text()
    assert len(config.host.key) == 32 and config.host.key.hex() in terminals
    assert config.host.key.hex() not in repr(config)  # the signing key never lands in a log line
    assert config.capk.file == (world.root / "scheme/capk.json").resolve() and config.capk.file.is_file()
    # the demo's software PN532 next to the world folder; otherwise HSU at 115200, no reset line
    assert config.reader == ReaderConfig(port=str(world.root / "../pn532-pos"))
    # the offline floor limits are the acquirer's figures for this terminal, declared once in the world
    (entry,) = [entry for entry in world.terminals() if entry["tid"] == config.terminal.id]
    aid_limits = tuple((bytes.fromhex(aid), AidLimits(floor_limit=limit))
                       for aid, limit in entry["aid_floor_limits"].items())
    assert config.limits == Limits(contactless_limit=2_000_000, floor_limit=entry["floor_limit"], cvm_limit=100_000,
                                   aid_limits=aid_limits)
    assert entry["floor_limit"] == 200_000 and len(aid_limits) == 3
    assert config.limits.supported_aids == (DEBIT_AID, CREDIT_AID, QUASI_CREDIT_AID)  # quasi-credit by default
    assert config.gpio.backend == "sim" and config.gpio.pins == FeedbackPins((5, 6, 13, 19), 18)
    assert config.gpio.tones == Tones(1500.0, 0.5, 750.0, 0.2, 0.2)
    assert config.journal.path == (world.root / "terminal-journal.sqlite3").resolve()
    assert config.ecr.listen == ("127.0.0.1", 8381)
    assert config.ecr.secret is not None and len(config.ecr.secret) >= 32
    assert config.ecr.secret not in repr(config)


def test_supported_aids_each_with_its_own_limits(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE.format(key=KEY) + """
[limits]
floor_limit = 1000
aid_floor_limits = { A000000333010102 = 300 }

[aids.A000000333010101]
transaction_limit = 500000
cvm_limit = 20000

[aids.A000000333010102]

[aids]
A000000333010103 = { floor_limit = 0 }
""")
    limits = load_config(path).limits
    assert limits.supported_aids == (DEBIT_AID, CREDIT_AID, QUASI_CREDIT_AID)
    assert limits.aid_limits == (
        (DEBIT_AID, AidLimits(transaction_limit=500_000, cvm_limit=20_000)),
        (CREDIT_AID, AidLimits(floor_limit=300)),  # the older aid_floor_limits still counts
        (QUASI_CREDIT_AID, AidLimits(floor_limit=0)),
    )
    only_debit = _write(tmp_path, BASE.format(key=KEY) + "\n[aids]\nA000000333010101 = {}\n")
    assert load_config(only_debit).limits.supported_aids == (DEBIT_AID,)  # quasi-credit off: listed AIDs only


def test_every_section_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    path = _write(tmp_path, BASE.format(key=KEY).replace("[ecr]\n", '[ecr]\nlisten = ""\n') + """
[reader]
interface = "hsu"
port = "pn532-pos"
baud = 921600
reset_pin = 4
apdu_timeout = 1.5

[limits]
contactless_limit = 500000
floor_limit = 0
cvm_limit = 30000
aid_floor_limits = { A000000333010102 = 40000 }

[gpio]
backend = "rpi"
lights = [17, 27, 22, 23]
buzzer = -1
success_hz = 2000
alert_ms = 150
idle_blink_ms = []

[journal]
path = "data/journal.db"
""")
    config = load_config(path)
    assert config.reader.port == str(tmp_path.resolve() / "pn532-pos")
    assert (config.reader.baud, config.reader.reset_pin, config.reader.apdu_timeout) == (921600, 4, 1.5)
    assert config.limits == Limits(500_000, 0, 30_000, aid_limits=((CREDIT_AID, AidLimits(floor_limit=40_000)),))
    assert config.gpio.pins == FeedbackPins((17, 27, 22, 23), None)
    assert config.gpio.tones.success_hz == 2000.0 and config.gpio.tones.alert_seconds == 0.15
    assert config.gpio.idle_blink is None
    assert config.journal.path == tmp_path.resolve() / "data/journal.db"
    assert config.ecr.listen is None


BAD = [
    # (what to add or replace, the key the message must name, a piece of the fix)
    ("[reader]\nbaud = 100000", "reader.baud", "use one of 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600"),
    ("[receipt]\nbaud = 12345", "receipt.baud", "the printer's self-test page shows it"),
    ("[receipt]\npaper = \"58mm\"", "receipt.paper", "the keys of [receipt] are printer, baud"),
    ("[reader]\ninterface = \"usb\"", "reader.interface", '"hsu" | "i2c" | "spi"'),
    ("[reader]\ninterface = \"i2c\"\nbaud = 921600", "reader.baud", 'interface = "hsu"'),
    ("[reader]\ni2c_bus = 2", "reader.i2c_bus", "0 to 1"),
    ("[reader]\nspi_bus = 1", "reader.spi_bus", "reader.spi_cs"),
    ("[reader]\nspeed = 1", "reader.speed", "the keys of [reader] are"),
    ("[reader]\nreset_pin = 40", "reader.reset_pin", "BCM number 2 to 27"),
    ("[reader]\nreset_pin = 5", "reader.reset_pin", "a pin of their own"),
    ("[reader]\napdu_timeout = 0", "reader.apdu_timeout", "use 0.1 to 30.0"),
    ("[reader]\ntype = \"acr122\"", "reader.type", '"pn532" | "pcsc"'),
    ("[reader]\nname = \"ACR122U\"", "reader.name", 'set type = "pcsc"'),
    ("[reader]\ntype = \"pcsc\"\nname = \"ACR\\u0007\"", "reader.name", "printable text"),
    ("[limits]\ncvm_limit = -1", "limits.cvm_limit", "use 0 to 999999999999"),
    ("[limits]\nfloor_limit = \"100\"", "limits.floor_limit", "without quotes"),
    ("[limits]\ncontactless_limit = true", "limits.contactless_limit", "without quotes"),
    ("[limits]\naid_floor_limits = 5", "limits.aid_floor_limits", "{ A000000333010101 = 200000 }"),
    ("[limits]\naid_floor_limits = {{ A0000003 = 5 }}", "limits.aid_floor_limits.A0000003", "5 to 16 bytes"),
    ("[limits]\naid_floor_limits = {{ A000000333010101 = -5 }}", "limits.aid_floor_limits.A000000333010101",
     "0 to 999999999999"),
    ("[aids]", "aids", "remove [aids]"),
    ("[aids.A0000003]", "aids.A0000003", "5 to 16 bytes"),
    ("[aids]\nA000000333010101 = 5", "aids.A000000333010101", "A000000333010101 = {}"),
    ("[aids.A000000333010101]\nfloor = 5", "aids.A000000333010101.floor", "transaction_limit, floor_limit, cvm_limit"),
    ("[aids.A000000333010101]\ncvm_limit = -5", "aids.A000000333010101.cvm_limit", "0 to 999999999999"),
    ("[aids.A000000333010101]\n[aids.a000000333010101]", "aids.a000000333010101", "list each AID once"),
    ("[limits]\naid_floor_limits = {{ A000000333010102 = 5 }}\n[aids.A000000333010101]",
     "limits.aid_floor_limits.A000000333010102", "move it to [aids.A000000333010102] floor_limit = 5"),
    ("[limits]\naid_floor_limits = {{ A000000333010101 = 5 }}\n[aids.A000000333010101]\nfloor_limit = 6",
     "limits.aid_floor_limits.A000000333010101", "keep only [aids.A000000333010101] floor_limit"),
    ("[gpio]\nbackend = \"pigpio\"", "gpio.backend", '"sim" | "rpi"'),
    ("[gpio]\nlights = [5, 6, 13]", "gpio.lights", "lights 1–4"),
    ("[gpio]\nlights = [5, 14, 13, 19]", "gpio.lights[1]", "choose another pin"),
    ("[gpio]\nbuzzer = 6", "gpio.buzzer", "a pin of their own"),
    ("[gpio]\nreset_pin = 4", "gpio.reset_pin", "reader.reset_pin"),
    ("[gpio]\nsuccess_hz = true", "gpio.success_hz", "write a number"),
    ("[gpio]\nidle_blink_ms = [1]", "gpio.idle_blink_ms", "[] for a steady light"),
    ('[ecr]\n|[ecr]\nlisten = "8381"\n', "ecr.listen", "HOST:PORT"),
    (f'secret = "{SECRET}"\n|', "ecr.secret", 'listen = "" to turn the local ECR off'),
    (f'secret = "{SECRET}"|secret = "{SECRET[:31]}"', "ecr.secret", "31 characters is too short"),
    (f'secret = "{SECRET}"|secret = "{SECRET[:20]} {SECRET[20:]}"', "ecr.secret", "Authorization: Bearer"),
    (f'secret = "{SECRET}"|secret = 12345', "ecr.secret", "secrets.token_urlsafe"),
    (f'secret = "{SECRET}"|token = "{SECRET}"', "ecr.token", "ecr.secret"),
    ("[journal]\npath = \"missing/journal.db\"", "journal.path", "folder"),
    ("[printer]\nwidth = 32", "printer", "the sections are"),
    ('id = "QP000001"|id = "QP1"', "terminal.id", 'id = "QP000001"'),
    ('country = "0156"|country = "156"', "terminal.country", 'country = "0156"'),
    ('merchant_id = "898310054110001"|', "terminal.merchant_id", "add merchant_id"),
    ('url = "http://127.0.0.1:8380"|url = "ftp://host"', "host.url", "http://127.0.0.1:8380"),
    ('key = "{key}"|key = "xyz"', "host.key", "acquirer/terminals.json"),
    ('file = "capk.json"|file = "nothing.json"', "capk.file", "scheme/capk.json"),
    ('[host]\nurl = "http://127.0.0.1:8380"\nkey = "{key}"\n|', "host", "add a [host] section"),
]


@pytest.mark.parametrize(("change", "key", "fix"), BAD, ids=[f"{key}-{i}" for i, (_, key, _) in enumerate(BAD)])
def test_a_bad_value_names_its_key_and_the_fix(tmp_path: Path, change: str, key: str, fix: str) -> None:
    text = BASE
    if "|" in change:
        old, new = change.split("|")
        assert old in text
        text = text.replace(old, new)
    else:
        text += "\n" + change + "\n"
    path = _write(tmp_path, text.format(key=KEY))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert caught.value.key == key
    assert message.startswith(f"{key}: ")
    assert fix in message
    assert str(path) in message  # which file, for a terminal started with several
    assert SECRET[:20] not in message  # never the local register's secret, even a wrong one


def test_a_pcsc_reader_by_name(tmp_path: Path) -> None:
    loaded = load_config(_write(tmp_path, BASE.format(key=KEY) + '[reader]\ntype = "pcsc"\nname = "ACR122U"\n'))
    assert (loaded.reader.type, loaded.reader.pcsc_reader) == ("pcsc", "ACR122U")
    assert load_config(_write(tmp_path, BASE.format(key=KEY))).reader.type == "pn532"


def test_the_baud_message_reads_as_documented(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE.format(key=KEY) + "[reader]\nbaud = 100000\n")
    with pytest.raises(ConfigError, match=r"^reader\.baud: 100000 is not a PN532 UART rate; use one of 9600, "):
        load_config(path)


def test_a_missing_file_and_broken_toml_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pass --config FILE"):
        load_config(tmp_path / "none.toml")
    path = _write(tmp_path, "[terminal\nid = 1\n")
    with pytest.raises(ConfigError, match=r"not valid TOML .*line 1.*fix the syntax"):
        load_config(path)
