"""Helpers shared by the deployment tests (a module of its own: `conftest` is ambiguous across test folders)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
VENV_BIN = Path(sys.executable).parent


def need(tool: str, package: str) -> str:
    """The tool's path, or a failure that says how to get it (./scripts/test installs it on Debian)."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is missing: install Debian's {package} package (apt-get install {package}); "
                    "./scripts/test does that on a fresh machine")
    return path

