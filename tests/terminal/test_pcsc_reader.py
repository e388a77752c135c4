"""The terminal's PC/SC reader (issue #16 §1): doctor names it, and says what to do when pcscd is not there. Sales
and fares through pcscd: tests/terminal/test_reader_backends.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from pcscd import READER, no_pcscd, running_pcscd
from readerconfig import with_reader

from terminal import cli


def test_doctor_names_the_reader_and_says_when_pcscd_is_not_there(config: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    pcsc_config = with_reader(config, f'type = "pcsc"\nname = "{READER}"\n')
    with no_pcscd():  # nor another test's meanwhile
        cli.main(["--config", str(pcsc_config), "doctor"])
    out = capsys.readouterr().out
    assert "pcscd" in out and ("is pcscd running?" in out or "Service not available" in out), out
    with running_pcscd(tmp_path / "pcscd"):
        cli.main(["--config", str(pcsc_config), "doctor"])
        out = capsys.readouterr().out
    assert f"PC/SC reader {READER} 00 00 (pcscd)" in out, out
