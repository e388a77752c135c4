"""The end-of-session scan: no full PAN, token PAN or track 2 anywhere the test session wrote.

At the end of every pytest session this looks at everything the session left behind — every file under pytest's
basetemp (journals, acquirer databases and their WAL files, logs, saved pages, receipts) and every captured
stdout, stderr and log section of every test report — for the card numbers of every test world found under
basetemp: each card's PAN, each token PAN, in the forms they could leak in:

* text: the digits (which is also how the hex text of a BCD 5A or 57 begins), in UTF-8 and UTF-16;
* binary: the PAN packed as BCD (5A, and the first bytes of a packed track 2 equivalent 57).

A hit right before a ``D`` or ``=`` separator is reported as track 2. The world's own files (the cards'
memory, the token vault, the wallets: `cards/`, `transit/`, `tsp/`, `phones/`), and card or wallet files copied
elsewhere (JSON with a test-world card ``format``), are the simulated cards themselves and are not scanned.

A finding fails the session (exit status 1) naming the file or report section and the byte offset. The pure
functions are tested on planted PANs in tests/robustness/test_secret_scan.py, so the scan is known to be able
to fail.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

WORLD_MARKER = "WORLD.json"
WORLD_OWN_FOLDERS = ("cards", "transit", "tsp", "phones")  # the simulated cards' memory, in clear by design
CARD_FORMATS = {"quickpass-card", "quickpass-cards", "quickpass-wallet", "quickpass-tsp"}
MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Secret:
    kind: str  # "PAN" or "token PAN"
    value: str  # the digits

    @property
    def masked(self) -> str:
        return self.value[:6] + "*" * (len(self.value) - 10) + self.value[-4:]


@dataclass(frozen=True)
class Finding:
    where: str  # a file path or a report section
    offset: int
    what: str  # e.g. "PAN 621001******3148 as ASCII digits (track 2)"

    def __str__(self) -> str:
        return f"{self.where} @ byte {self.offset}: {self.what}"


def world_secrets(root: Path) -> list[Secret]:
    """Every card PAN and token PAN of the test world at `root` (read from its index files, not guessed)."""
    found: list[Secret] = []
    try:
        index = json.loads((root / "cards" / "index.json").read_text())
        found += [Secret("PAN", str(card["pan"])) for card in index.get("cards", [])]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    try:
        tsp = json.loads((root / "tsp" / "tsp.json").read_text())
        found += [Secret("token PAN", str(token["token_pan"])) for token in tsp.get("tokens", [])]
        found += [Secret("PAN", str(token["funding_pan"])) for token in tsp.get("tokens", [])]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return [secret for secret in found if secret.value.isdigit() and 12 <= len(secret.value) <= 19]


_STANDALONE_DIGITS = re.compile(r"(?<![0-9A-Fa-f])[0-9]{13,19}(?![0-9A-Fa-f])")


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def pan_like_runs(text: str, bins: Iterable[str]) -> list[str]:
    """Digit runs that could be a card number of this world: 13–19 digits standing alone (not part of a longer
    hex field, in either case), starting with one of the world's BINs, Luhn-valid. Random hex (an unpredictable
    number, a cryptogram, a nonce) meets all three with a chance far below one in a billion per field, so a
    report check built on this cannot fail by chance, yet any PAN of the world's issuers is caught even if it is
    not one of the cards on file."""
    prefixes = tuple(bins)
    return [run for run in _STANDALONE_DIGITS.findall(text) if run.startswith(prefixes) and luhn_valid(run)]


def world_bins(root: Path) -> list[str]:
    """The BINs of the world's issuers and its token BIN: the first digits of every PAN the world can make."""
    found: list[str] = []
    try:
        found += [str(issuer["bin"]) for issuer in json.loads((root / "issuers" / "issuers.json").read_text())
                  ["issuers"]]
        found.append(str(json.loads((root / "tsp" / "tsp.json").read_text())["token_bin"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return [prefix for prefix in found if prefix.isdigit()]


def find_worlds(base: Path) -> list[Path]:
    """os.walk, not rglob: a folder another pytest session removes meanwhile (its own basetemp clean-up under the
    shared /tmp/pytest-of-USER) is passed over instead of ending the scan with a traceback."""
    return sorted(Path(folder) for folder, _, names in os.walk(base) if WORLD_MARKER in names)


def _forms(secret: Secret) -> Iterator[tuple[bytes, str]]:
    digits = secret.value
    yield digits.encode(), "as ASCII digits"
    yield digits.encode("utf-16-le"), "as UTF-16 digits"
    yield bytes.fromhex(digits[: len(digits) // 2 * 2]), "packed BCD"


class Scanner:
    """One compiled pattern over every form of every secret; `scan` gives each hit once."""

    def __init__(self, secrets: Iterable[Secret]) -> None:
        self._labels: dict[bytes, str] = {}
        for secret in set(secrets):
            for pattern, form in _forms(secret):
                self._labels.setdefault(pattern, f"{secret.kind} {secret.masked} {form}")
        patterns = sorted(self._labels, key=len, reverse=True)
        self._regex = re.compile(b"|".join(re.escape(p) for p in patterns)) if patterns else None

    def __bool__(self) -> bool:
        return self._regex is not None

    def scan(self, data: bytes, where: str) -> list[Finding]:
        if self._regex is None:
            return []
        findings = []
        for match in self._regex.finditer(data):
            label = self._labels[match.group()]
            following = data[match.end() : match.end() + 1]
            if following in (b"D", b"d", b"=") or (label.endswith("packed BCD") and following[:1] and
                                                   following[0] >> 4 == 0x0D):
                label += " (track 2)"
            findings.append(Finding(where, match.start(), label))
        return findings


def _is_card_file(path: Path, head: bytes) -> bool:
    """A card, wallet or token-vault file copied out of a world: the simulated card itself."""
    if path.suffix != ".json" or b'"format"' not in head[:400]:
        return False
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and document.get("format") in CARD_FORMATS


def scan_tree(base: Path, scanner: Scanner, worlds: list[Path] | None = None) -> list[Finding]:
    """Every regular file under `base` except the worlds' own card memory; symlinks are not followed."""
    world_roots = set(find_worlds(base) if worlds is None else worlds)
    findings: list[Finding] = []
    for folder, folders, names in os.walk(base):
        if Path(folder) in world_roots:  # pruned here, not tested per file: that was files × worlds path checks
            folders[:] = [f for f in folders if f not in WORLD_OWN_FOLDERS]
            names = [n for n in names if n != WORLD_MARKER]
        for name in names:
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file():
                continue
            try:
                if path.stat().st_size > MAX_FILE_BYTES:
                    continue
                data = path.read_bytes()
            except OSError:
                continue  # a socket, a file removed meanwhile
            if _is_card_file(path, data):
                continue
            findings += scanner.scan(data, str(path))
    return findings


def is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


class SessionScan:
    """The pytest plugin: collects report sections as tests run, scans basetemp and them at session end.
    Under pytest-xdist the controller scans: it receives every worker's reports, and the workers' temporary
    folders are inside its basetemp."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.sections: list[tuple[str, str]] = []
        self.findings: list[Finding] = []
        self.scanned = False

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for title, text in report.sections:
            if text:
                self.sections.append((f"{report.nodeid} [{title}]", text))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if is_xdist_worker(self.config):
            return
        factory = getattr(self.config, "_tmp_path_factory", None)
        base = getattr(factory, "_basetemp", None) if factory is not None else None
        if base is None or not Path(base).is_dir():
            return  # the session never created a temporary folder: it wrote nothing
        base = Path(base)
        worlds = find_worlds(base)
        secrets = [secret for world in worlds for secret in world_secrets(world)]
        scanner = Scanner(secrets)
        self.scanned = True
        if not scanner:
            return
        self.findings = scan_tree(base, scanner, worlds)
        for where, text in self.sections:
            self.findings += scanner.scan(text.encode("utf-8", "surrogateescape"), where)
        if self.findings:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.findings:
            return
        terminalreporter.section("secret scan: full PAN / track 2 found", red=True)
        for finding in self.findings[:50]:
            terminalreporter.line(str(finding))
        if len(self.findings) > 50:
            terminalreporter.line(f"… and {len(self.findings) - 50} more")
