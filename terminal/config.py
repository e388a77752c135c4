"""The terminal's configuration: one TOML file (`pos-terminal --config FILE`), checked in full at start.

A test world writes a ready `terminal.toml` ([terminal], [host], [capk]); every other section is optional
and has defaults. A mistake stops the terminal before it touches the reader or the host, with a message
that names the key and says how to fix it, because a POS that starts half-configured fails at the counter.
Relative paths (and a relative reader port, e.g. a software PN532's link) count from the file's folder.

Schema (defaults in brackets):

    [terminal]  id (8 letters/digits, DE41), merchant_id (15 letters/digits, DE42),
                country, currency (4 digits, ISO 3166 / ISO 4217 numeric as 9F1A / 5F2A: "0156")
    [host]      url (http:// or https://), key (hex, ≥ 16 bytes: request signing), timeout [10.0] s
    [capk]      file (the world's scheme/capk.json)
    [reader]    type ["pn532"] | "pcsc" (a USB contactless reader through pcscd: name [the first reader] is part
                of the reader's name, e.g. "ACR122U"; feedback ["none"] | "acr122u": the reader's own LED and
                buzzer follow the terminal's lights and tones, by ACS's FF 00 40); for a PN532: interface
                ["hsu"] | "i2c" | "spi"; port ["/dev/ttyAMA0"] (HSU); baud [115200] (a SetSerialBaudRate rate
                9600 … 921600, switched after init); reset_pin [none] (BCM, RSTPDN); i2c_bus [1] (0 | 1);
                spi_cs [0] (0 = CE0/GPIO8, 1 = CE1/GPIO7; pn532pi uses SPI bus 0); spi_speed_hz [1000000]
                (≤ 5 MHz); apdu_timeout [2.0] s
    [limits]    amounts in fen (DF20 / DF19 / DF21): contactless_limit [2000000] (¥20,000.00; at or above it
                contactless is refused), floor_limit [200000] (¥2,000.00; above it the card must go online),
                cvm_limit [100000] (¥1,000.00; at or above it a CVM is required); these apply to every AID
                without figures of its own in [aids]. aid_floor_limits (older form, still read) = { AID = fen }
                is the same as floor_limit in [aids.AID]
    [aids]      the AIDs this terminal accepts, each a table of its own limits (any of transaction_limit,
                floor_limit, cvm_limit; the rest from [limits]), e.g. [aids.A000000333010101] floor_limit = 150000,
                or A000000333010103 = {} for the defaults; a shorter AID covers the longer ones it starts
                (A0000003330101 = every UnionPay qPBOC product). Without [aids]: the UnionPay debit, credit and
                quasi-credit AIDs (A000000333010101/02/03). The acquirer holds the same floor limits.
    [gpio]      backend ["sim"] | "rpi"; lights [[5, 6, 13, 19]] (BCM, lights 1–4); buzzer [18] (BCM, a
                passive piezo on PWM; -1 = none); success_hz [1500], success_ms [500], alert_hz [750],
                alert_ms [200], alert_gap_ms [200]; reading_step_ms [150]; idle_blink_ms [[250, 1750]]
                (on, off; [] = steady)
    [journal]   path ["journal.sqlite3"]
    [ecr]       listen ["127.0.0.1:8381"] ("" = off); secret (required while listen is on: at least 32 random
                characters of A–Z a–z 0–9 - . _ ~ + / =, which a local register sends as
                ``Authorization: Bearer …``; a test world writes a random one); keypad_pin (4 to 12
                digits: turns on the merchant keypad page /keypad, which asks for it; absent = keypad off);
                metrics_token (a Prometheus scraper's bearer token for GET /metrics, the same form as secret;
                absent = /metrics refused); metrics_public [false] (true: /metrics without a token)
    [transit]   keys (the software PSAM's keys: a world's transit/psam.json); gate_fare (fen: with it,
                `pos-terminal run` is a metro gate charging that fare at every tap, no register)

Limit defaults are the sample per-AID parameters of doc emv-qpboc.md §4 (the same as the kernel's
`KernelParams`): ¥1,000.00 is the published domestic no-PIN/no-signature threshold, the floor limit lets
small taps approve offline with fDDA, and the contactless limit leaves a wide CVM band for phones. They
are business parameters: set them per merchant; floor_limit = 0 sends every payment online. Tones are the
placeholders of doc pn532.md §9 (to be checked against EMV Book A before any certification claim).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hostproto.limits import DEFAULT_FLOOR_LIMIT
from hostproto.messages import MAX_AMOUNT
from terminal.kernel.params import DEFAULT_AIDS, AidLimits

PN532_UART_RATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
"""SetSerialBaudRate rates a Linux UART can be set to (the chip's 1288000 is not a termios speed)."""

DEFAULT_BAUD = 115200
HEADER_PINS = range(2, 28)  # BCM 2–27 on the 40-pin header (0 and 1 belong to the HAT EEPROM)
UART0_PINS = {14: "TXD", 15: "RXD"}
I2C1_PINS = {2: "SDA", 3: "SCL"}
SPI0_PINS = {7: "CE1", 8: "CE0", 9: "MISO", 10: "MOSI", 11: "SCLK"}
HEADER_UARTS = ("/dev/ttyAMA0", "/dev/serial0", "/dev/ttyS0")
ECR_SECRET_MIN, ECR_SECRET_MAX = 32, 256  # characters of the local register's bearer token
_ECR_SECRET = re.compile(r"[A-Za-z0-9._~+/=-]+")  # RFC 6750 token characters: sent as-is in a header


class ConfigError(Exception):
    """A configuration mistake; the message starts with the key and ends with the fix."""

    def __init__(self, key: str, problem: str, fix: str, path: Path | None = None) -> None:
        self.key, self.problem, self.fix, self.path = key, problem, fix, path
        where = f" (in {path})" if path is not None else ""
        super().__init__(f"{key}: {problem}; {fix}{where}" if key else f"{problem}; {fix}{where}")


@dataclass(frozen=True)
class TerminalSection:
    id: str
    merchant_id: str
    country: str
    currency: str


@dataclass(frozen=True)
class HostConfig:
    url: str
    key: bytes = field(repr=False)
    timeout: float = 10.0


@dataclass(frozen=True)
class CapkConfig:
    file: Path


@dataclass(frozen=True)
class ReaderConfig:
    type: str = "pn532"  # or "pcsc"
    pcsc_reader: str = ""  # part of the PC/SC reader's name; "" = the first pcscd lists
    feedback: str = "none"  # or "acr122u": the PC/SC reader's own LED and buzzer show the terminal's feedback
    interface: str = "hsu"
    port: str = "/dev/ttyAMA0"
    baud: int = DEFAULT_BAUD
    reset_pin: int | None = None
    i2c_bus: int = 1
    spi_cs: int = 0
    spi_speed_hz: int = 1_000_000
    apdu_timeout: float = 2.0


@dataclass(frozen=True)
class Limits:
    contactless_limit: int = 2_000_000
    floor_limit: int = DEFAULT_FLOOR_LIMIT
    cvm_limit: int = 100_000
    supported_aids: tuple[bytes, ...] = DEFAULT_AIDS
    aid_limits: tuple[tuple[bytes, AidLimits], ...] = ()  # an AID's own figures (None: the ones above)


@dataclass(frozen=True)
class FeedbackPins:
    lights: tuple[int, int, int, int] = (5, 6, 13, 19)
    buzzer: int | None = 18


@dataclass(frozen=True)
class Tones:
    success_hz: float = 1500.0
    success_seconds: float = 0.5
    alert_hz: float = 750.0
    alert_seconds: float = 0.2
    alert_gap_seconds: float = 0.2


@dataclass(frozen=True)
class GpioConfig:
    backend: str = "sim"
    pins: FeedbackPins = FeedbackPins()
    tones: Tones = Tones()
    reading_step_seconds: float = 0.15
    idle_blink: tuple[float, float] | None = (0.25, 1.75)


@dataclass(frozen=True)
class JournalConfig:
    path: Path


@dataclass(frozen=True)
class EcrConfig:
    listen: tuple[str, int] | None = ("127.0.0.1", 8381)
    secret: str | None = field(default=None, repr=False)  # the local register's bearer token; None with listen off
    keypad_pin: str | None = field(default=None, repr=False)  # the merchant keypad page's PIN; None: keypad off
    metrics_token: str | None = field(default=None, repr=False)  # a scraper's bearer token for /metrics
    metrics_public: bool = False  # /metrics for anyone who reaches the port


@dataclass(frozen=True)
class ReceiptConfig:
    printer: str | None = None  # serial device of an ESC/POS thermal printer; None: receipts only in logs/status
    baud: int = 9600


@dataclass(frozen=True)
class TransitConfig:
    keys: Path | None = None  # the PSAM's purchase master keys (a world's transit/psam.json)
    gate_fare: int | None = None  # fen: the service is a gate, charging this at every tap


@dataclass(frozen=True)
class TerminalConfig:
    path: Path
    terminal: TerminalSection
    host: HostConfig
    capk: CapkConfig
    reader: ReaderConfig
    limits: Limits
    gpio: GpioConfig
    journal: JournalConfig
    ecr: EcrConfig
    transit: TransitConfig = TransitConfig()
    receipt: ReceiptConfig = ReceiptConfig()


SECTIONS = {
    "terminal": ("id", "merchant_id", "country", "currency"),
    "host": ("url", "key", "timeout"),
    "capk": ("file",),
    "reader": ("type", "name", "feedback", "interface", "port", "baud", "reset_pin", "i2c_bus", "spi_cs",
               "spi_speed_hz", "apdu_timeout"),
    "limits": ("contactless_limit", "floor_limit", "aid_floor_limits", "cvm_limit"),
    "aids": (),  # keys are AIDs, checked by _aids
    "gpio": ("backend", "lights", "buzzer", "success_hz", "success_ms", "alert_hz", "alert_ms", "alert_gap_ms",
             "reading_step_ms", "idle_blink_ms"),
    "journal": ("path",),
    "ecr": ("listen", "secret", "keypad_pin", "metrics_token", "metrics_public"),
    "transit": ("keys", "gate_fare"),
    "receipt": ("printer", "baud"),
}
REQUIRED_SECTIONS = ("terminal", "host", "capk")
RENAMED = {  # keys people reach for, and where the setting really is
    "reader.spi_bus": "pn532pi always uses SPI bus 0; choose the chip select with reader.spi_cs = 0 | 1",
    "reader.device": "the serial device is reader.port",
    "reader.baudrate": "the UART speed is reader.baud",
    "gpio.reset_pin": "the PN532's RSTPDN pin is reader.reset_pin",
    "ecr.token": "the local register's shared secret is ecr.secret",
    "ecr.key": "the local register's shared secret is ecr.secret",
}


def load_config(path: Path) -> TerminalConfig:
    """Read and check the whole file now, so that no mistake surfaces in the middle of a payment."""
    path = Path(path)
    try:
        with path.open("rb") as stream:
            data = tomllib.load(stream)
    except FileNotFoundError:
        raise ConfigError("", f"configuration file {path} does not exist",
                          "pass --config FILE (a test world has a ready terminal.toml)") from None
    except OSError as error:
        raise ConfigError("", f"cannot read {path}: {error.strerror}", "check the path and its permissions") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError("", f"{path} is not valid TOML ({error})", "fix the syntax at that line") from None
    except UnicodeDecodeError:
        raise ConfigError("", f"{path} is not UTF-8 text", "save it as UTF-8") from None
    try:
        return _parse(data, path.resolve().parent, path)
    except ConfigError as error:
        raise ConfigError(error.key, error.problem, error.fix, path) from None


def _parse(data: dict[str, Any], folder: Path, path: Path) -> TerminalConfig:
    for name, value in data.items():
        if name not in SECTIONS:
            raise ConfigError(name, "unknown section", f"the sections are [{'], ['.join(SECTIONS)}]")
        if not isinstance(value, dict):
            raise ConfigError(name, "must be a table", f"write it as a [{name}] section")
    for name in REQUIRED_SECTIONS:
        if name not in data:
            raise ConfigError(name, "section missing", f"add a [{name}] section (a test world's terminal.toml has it)")
    sections = {name: _Section(name, data.get(name, {})) for name in SECTIONS if name != "aids"}
    reader = _reader(sections["reader"], folder)
    gpio = _gpio(sections["gpio"])
    _check_pins(reader, gpio)
    return TerminalConfig(
        path=path,
        terminal=_terminal(sections["terminal"]),
        host=_host(sections["host"]),
        capk=CapkConfig(sections["capk"].file("file", folder, required=True, must_exist=True,
                                              fix="point it at the world's scheme/capk.json")),
        reader=reader,
        limits=_limits(sections["limits"], data.get("aids")),
        gpio=gpio,
        journal=JournalConfig(sections["journal"].file("path", folder, default="journal.sqlite3",
                                                       fix="a file in a folder that exists")),
        ecr=_ecr(sections["ecr"]),
        transit=_transit(sections["transit"], folder),
        receipt=_receipt(sections["receipt"], folder),
    )


class _Section:
    """Typed reads from one table; every error names `section.key`."""

    def __init__(self, name: str, data: dict[str, Any]) -> None:
        self.name = name
        self.data = data
        for key in data:
            if key not in SECTIONS[name]:
                full = f"{name}.{key}"
                fix = RENAMED.get(full, f"the keys of [{name}] are {', '.join(SECTIONS[name])}")
                raise ConfigError(full, "unknown key", fix)

    def key(self, key: str) -> str:
        return f"{self.name}.{key}"

    def text(self, key: str, *, default: str | None = None, pattern: str | None = None, what: str = "",
            example: str = "") -> str:
        value = self.data.get(key, default)
        if value is None:
            raise ConfigError(self.key(key), "missing", f"add {key} = {example or '…'} to [{self.name}]")
        if not isinstance(value, str):
            raise ConfigError(self.key(key), f"{value!r} is not a string", f"quote it: {key} = \"{value}\"")
        if pattern is not None and not re.fullmatch(pattern, value):
            raise ConfigError(self.key(key), f"{value!r} is not {what}", f"use e.g. {key} = {example}")
        return value

    def boolean(self, key: str, *, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(self.key(key), f"{value!r} is not true or false", f"write {key} = true or false,"
                              " without quotes")
        return value

    def integer(self, key: str, *, default: int, minimum: int = 0, maximum: int = MAX_AMOUNT) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.key(key), f"{value!r} is not a whole number", f"write a number without quotes, "
                              f"{minimum} to {maximum}")
        if not minimum <= value <= maximum:
            raise ConfigError(self.key(key), f"{value} is out of range", f"use {minimum} to {maximum}")
        return value

    def number(self, key: str, *, default: float, minimum: float, maximum: float) -> float:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(self.key(key), f"{value!r} is not a number", f"write a number, {minimum} to {maximum}")
        if not minimum <= value <= maximum:
            raise ConfigError(self.key(key), f"{value} is out of range", f"use {minimum} to {maximum}")
        return float(value)

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.data.get(key, default)
        if value not in choices:
            options = " | ".join(f'"{c}"' for c in choices)
            raise ConfigError(self.key(key), f"{value!r} is not one of {options}", f"use {key} = {options}")
        return str(value)

    def pin(self, key: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value not in HEADER_PINS:
            raise ConfigError(key, f"{value!r} is not a BCM GPIO number on the header",
                              f"use a BCM number {HEADER_PINS.start} to {HEADER_PINS.stop - 1}")
        return value

    def file(self, key: str, folder: Path, *, default: str | None = None, required: bool = False,
             must_exist: bool = False, fix: str = "") -> Path:
        value = self.text(key, default=None if required else default, example='"…"')
        resolved = (folder / value).resolve()
        if must_exist and not resolved.is_file():
            raise ConfigError(self.key(key), f"{resolved} does not exist", fix)
        if not must_exist and not resolved.parent.is_dir():
            raise ConfigError(self.key(key), f"folder {resolved.parent} does not exist", fix or "create it first")
        return resolved


def _terminal(section: _Section) -> TerminalSection:
    return TerminalSection(
        id=section.text("id", pattern=r"[0-9A-Za-z]{8}", what="8 letters or digits (DE41)", example='"QP000001"'),
        merchant_id=section.text("merchant_id", pattern=r"[0-9A-Za-z]{15}", what="15 letters or digits (DE42)",
                                example='"898310054110001"'),
        country=section.text("country", pattern=r"[0-9]{4}", what="a 4-digit ISO 3166 numeric code",
                            example='"0156" (China)'),
        currency=section.text("currency", pattern=r"[0-9]{4}", what="a 4-digit ISO 4217 numeric code",
                             example='"0156" (CNY)'),
    )


def _host(section: _Section) -> HostConfig:
    url = section.text("url", pattern=r"https?://[^\s/]+(/\S*)?", what="an http:// or https:// URL",
                      example='"http://127.0.0.1:8380"')
    key = section.text("key", pattern=r"([0-9A-Fa-f]{2}){16,}", what="a hex key of at least 16 bytes",
                      example="the key of this terminal in the world's acquirer/terminals.json")
    timeout = section.number("timeout", default=10.0, minimum=1.0, maximum=120.0)
    return HostConfig(url.rstrip("/"), bytes.fromhex(key), timeout)


def _reader(section: _Section, folder: Path) -> ReaderConfig:
    kind = section.choice("type", ("pn532", "pcsc"), "pn532")
    name = section.text("name", default="", pattern=r"[\x20-\x7e]{0,100}", what="printable text up to 100 characters",
                        example='"ACR122U"')
    if name and kind != "pcsc":
        raise ConfigError(section.key("name"), "a reader name is for PC/SC readers", 'set type = "pcsc" or remove name')
    feedback = section.choice("feedback", ("none", "acr122u"), "none")
    if feedback != "none" and kind != "pcsc":
        raise ConfigError(section.key("feedback"), "the reader's own LED and buzzer are driven through PC/SC",
                          'set type = "pcsc" or remove feedback (a PN532 board has [gpio] lights)')
    interface = section.choice("interface", ("hsu", "i2c", "spi"), "hsu")
    port = section.text("port", default=ReaderConfig.port, example='"/dev/ttyAMA0"')
    if not port:
        raise ConfigError(section.key("port"), "empty", 'name the serial device, e.g. port = "/dev/ttyAMA0"')
    if not port.startswith("/"):
        port = str(folder / port)
    baud = section.data.get("baud", DEFAULT_BAUD)
    if isinstance(baud, bool) or baud not in PN532_UART_RATES:
        raise ConfigError(section.key("baud"), f"{baud!r} is not a PN532 UART rate",
                          f"use one of {', '.join(map(str, PN532_UART_RATES))}")
    if baud != DEFAULT_BAUD and interface != "hsu":
        raise ConfigError(section.key("baud"), f"only HSU (a UART) has a baud rate, the interface is {interface}",
                          'remove baud or set interface = "hsu"')
    reset = section.data.get("reset_pin")
    return ReaderConfig(
        type=kind,
        pcsc_reader=name,
        feedback=feedback,
        interface=interface,
        port=port,
        baud=int(baud),
        reset_pin=None if reset is None else section.pin(section.key("reset_pin"), reset),
        i2c_bus=section.integer("i2c_bus", default=1, maximum=1),
        spi_cs=section.integer("spi_cs", default=0, maximum=1),
        spi_speed_hz=section.integer("spi_speed_hz", default=1_000_000, minimum=10_000, maximum=5_000_000),
        apdu_timeout=section.number("apdu_timeout", default=2.0, minimum=0.1, maximum=30.0),
    )


def _limits(section: _Section, aids: dict[str, Any] | None) -> Limits:
    defaults = Limits()
    listed = _aids(aids) if aids is not None else None
    own = dict(listed or {})
    for aid, floor_limit in _aid_floor_limits(section):  # the older form: a floor limit per AID
        name = aid.hex().upper()
        if aids is not None and aid not in own:
            raise ConfigError(f"limits.aid_floor_limits.{name}", "is not one of the AIDs in [aids]",
                              f"move it to [aids.{name}] floor_limit = {floor_limit}")
        mine = own.get(aid, AidLimits())
        if mine.floor_limit is not None:
            raise ConfigError(f"limits.aid_floor_limits.{name}", f"sets the floor limit [aids.{name}] also sets",
                              f"keep only [aids.{name}] floor_limit and remove it from aid_floor_limits")
        own[aid] = AidLimits(mine.transaction_limit, floor_limit, mine.cvm_limit)
    return Limits(
        contactless_limit=section.integer("contactless_limit", default=defaults.contactless_limit),
        floor_limit=section.integer("floor_limit", default=defaults.floor_limit),
        cvm_limit=section.integer("cvm_limit", default=defaults.cvm_limit),
        supported_aids=tuple(listed) if listed is not None else defaults.supported_aids,
        aid_limits=tuple((aid, limits) for aid, limits in own.items() if limits != AidLimits()),
    )


_AID_LIMIT_KEYS = ("transaction_limit", "floor_limit", "cvm_limit")


def _aids(table: object) -> dict[bytes, AidLimits]:
    """[aids]: AID = { limits }; the keys are AIDs, so they are checked here rather than against a key list."""
    if not isinstance(table, dict) or not table:
        raise ConfigError("aids", "names no AID", "add one table per AID, e.g. [aids.A000000333010101], "
                          "or remove [aids] to accept the UnionPay debit, credit and quasi-credit AIDs")
    aids: dict[bytes, AidLimits] = {}
    for name, limits in table.items():
        key = f"aids.{str(name)[:40]}"
        if not re.fullmatch(r"([0-9A-Fa-f]{2}){5,16}", str(name)):
            raise ConfigError(key, "is not an AID", "name the AID in hex, 5 to 16 bytes (A000000333010101)")
        if not isinstance(limits, dict):
            raise ConfigError(key, "must be a table of limits",
                              f"write [{key}] with any of {', '.join(_AID_LIMIT_KEYS)}, or {name} = {{}}")
        section = _Section("aids", {})
        section.name, section.data = key, limits
        for limit in limits:
            if limit not in _AID_LIMIT_KEYS:
                raise ConfigError(f"{key}.{limit}", "unknown key",
                                  f"the keys of [{key}] are {', '.join(_AID_LIMIT_KEYS)}")
        values = {limit: section.integer(limit, default=0) if limit in limits else None for limit in _AID_LIMIT_KEYS}
        aid = bytes.fromhex(name)
        if aid in aids:
            raise ConfigError(key, "is listed twice", "list each AID once")
        aids[aid] = AidLimits(**values)
    return aids


def _aid_floor_limits(section: _Section) -> tuple[tuple[bytes, int], ...]:
    table = section.data.get("aid_floor_limits", {})
    if not isinstance(table, dict):
        raise ConfigError(section.key("aid_floor_limits"), "is not a table of AID = amount",
                          "write e.g. aid_floor_limits = { A000000333010101 = 200000 }")
    limits = []
    for aid, limit in table.items():
        key = f"{section.key('aid_floor_limits')}.{str(aid)[:40]}"
        if not re.fullmatch(r"([0-9A-Fa-f]{2}){5,16}", str(aid)):
            raise ConfigError(key, "is not an AID", "name the AID in hex, 5 to 16 bytes (A000000333010101)")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_AMOUNT:
            raise ConfigError(key, f"{limit!r} is not an amount in fen", f"write a whole number, 0 to {MAX_AMOUNT}")
        limits.append((bytes.fromhex(aid), limit))
    return tuple(limits)


def _gpio(section: _Section) -> GpioConfig:
    backend = section.choice("backend", ("sim", "rpi"), "sim")
    lights = section.data.get("lights", list(FeedbackPins.lights))
    if not isinstance(lights, list) or len(lights) != 4:
        raise ConfigError("gpio.lights", f"{lights!r} is not four pins",
                          "list the BCM numbers of lights 1–4, e.g. lights = [5, 6, 13, 19]")
    pins = tuple(section.pin(f"gpio.lights[{i}]", pin) for i, pin in enumerate(lights))
    buzzer = section.data.get("buzzer", FeedbackPins.buzzer)
    if buzzer == -1:
        buzzer = None
    elif buzzer is not None:
        buzzer = section.pin("gpio.buzzer", buzzer)
    blink = section.data.get("idle_blink_ms", [250, 1750])
    if not isinstance(blink, list) or len(blink) not in (0, 2) or not all(
        isinstance(ms, int) and not isinstance(ms, bool) and 10 <= ms <= 10_000 for ms in blink
    ):
        raise ConfigError("gpio.idle_blink_ms", f"{blink!r} is not [on, off] in ms",
                          "use e.g. idle_blink_ms = [250, 1750] (10 to 10000 each), or [] for a steady light")
    tones = Tones(
        success_hz=section.number("success_hz", default=1500, minimum=100, maximum=10_000),
        success_seconds=section.number("success_ms", default=500, minimum=10, maximum=5000) / 1000,
        alert_hz=section.number("alert_hz", default=750, minimum=100, maximum=10_000),
        alert_seconds=section.number("alert_ms", default=200, minimum=10, maximum=5000) / 1000,
        alert_gap_seconds=section.number("alert_gap_ms", default=200, minimum=10, maximum=5000) / 1000,
    )
    return GpioConfig(
        backend=backend,
        pins=FeedbackPins(pins, buzzer),  # type: ignore[arg-type]  # four, checked above
        tones=tones,
        reading_step_seconds=section.number("reading_step_ms", default=150, minimum=0, maximum=2000) / 1000,
        idle_blink=(blink[0] / 1000, blink[1] / 1000) if blink else None,
    )


def _check_pins(reader: ReaderConfig, gpio: GpioConfig) -> None:
    """One pin, one job; and the pins the PN532's own bus uses are not free for lights."""
    used: dict[int, str] = {}
    named = [(f"gpio.lights[{i}]", pin) for i, pin in enumerate(gpio.pins.lights)]
    if gpio.pins.buzzer is not None:
        named.append(("gpio.buzzer", gpio.pins.buzzer))
    if reader.reset_pin is not None:
        named.append(("reader.reset_pin", reader.reset_pin))
    bus: dict[int, str] = {}
    if reader.interface == "hsu" and reader.port in HEADER_UARTS:
        bus = {pin: f"UART {name}" for pin, name in UART0_PINS.items()}
    elif reader.interface == "i2c":
        bus = {pin: f"I2C {name}" for pin, name in I2C1_PINS.items()}
    elif reader.interface == "spi":
        bus = {pin: f"SPI {name}" for pin, name in SPI0_PINS.items()}
    for key, pin in named:
        if pin in bus:
            raise ConfigError(key, f"BCM {pin} is the {bus[pin]} line the PN532 uses", "choose another pin")
        if pin in used:
            raise ConfigError(key, f"BCM {pin} is already {used[pin]}",
                              "give every light, the buzzer and the reset line a pin of their own")
        used[pin] = key


def _receipt(section: _Section, folder: Path) -> ReceiptConfig:
    printer = section.text("printer", default="", example='"/dev/ttyUSB1"')
    baud = section.integer("baud", default=9600)
    if baud not in (9600, 19200, 38400, 57600, 115200):
        raise ConfigError(section.key("baud"), f"{baud} is not a printer serial speed",
                          "use 9600, 19200, 38400, 57600 or 115200 (the printer's self-test page shows it)")
    return ReceiptConfig(str(folder / printer) if printer else None, baud)


def _transit(section: _Section, folder: Path) -> TransitConfig:
    keys = (section.file("keys", folder, must_exist=True, fix="point it at the world's transit/psam.json")
            if "keys" in section.data else None)
    if "gate_fare" not in section.data:
        return TransitConfig(keys)
    if keys is None:
        raise ConfigError("transit.gate_fare", "a gate needs the PSAM's keys", 'add keys = "transit/psam.json"')
    return TransitConfig(keys, section.integer("gate_fare", default=0, minimum=1))


def _ecr(section: _Section) -> EcrConfig:
    listen = _listen(section)
    return EcrConfig(listen, _ecr_secret(section, required=listen is not None), _keypad_pin(section),
                     _ecr_secret(section, required=False, key="metrics_token"),
                     section.boolean("metrics_public", default=False))


def _keypad_pin(section: _Section) -> str | None:
    value = section.data.get("keypad_pin")
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4,12}", value):
        raise ConfigError("ecr.keypad_pin", "not 4 to 12 digits", 'write it as a quoted string, e.g. keypad_pin = '
                          '"482916", or remove it to turn the keypad page off')
    return value


def _ecr_secret(section: _Section, *, required: bool, key: str = "secret") -> str | None:
    """A bearer token of [ecr] (the local register's secret, the metrics scraper's token), checked without ever
    putting its value in a message."""
    value = section.data.get(key)
    fix = (f'add {key} = "…" to [ecr]: {ECR_SECRET_MIN} to {ECR_SECRET_MAX} random letters and digits (e.g. the '
           'output of python3 -c "import secrets; print(secrets.token_urlsafe(32))"), which the client sends as '
           "Authorization: Bearer …")
    if value is None:
        if required:
            raise ConfigError(f"ecr.{key}", "missing while the local ECR is on", fix + ', or set listen = "" to '
                              "turn the local ECR off")
        return None
    if not isinstance(value, str) or not _ECR_SECRET.fullmatch(value):
        raise ConfigError(f"ecr.{key}", "not a string of letters, digits and - . _ ~ + / =", fix)
    if not ECR_SECRET_MIN <= len(value) <= ECR_SECRET_MAX:
        size = "short" if len(value) < ECR_SECRET_MIN else "long"
        raise ConfigError(f"ecr.{key}", f"{len(value)} characters is too {size}", fix)
    return value


def _listen(section: _Section) -> tuple[str, int] | None:
    value = section.text("listen", default="127.0.0.1:8381", example='"127.0.0.1:8381"')
    if not value:
        return None
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[0-9A-Za-z.-]+):([0-9]{1,5})", value)
    if match is None or not 1 <= int(match.group(2)) <= 65535:
        raise ConfigError("ecr.listen", f"{value!r} is not HOST:PORT",
                          'use e.g. listen = "127.0.0.1:8381", or "" to turn the ECR link off')
    return match.group(1).strip("[]"), int(match.group(2))
