"""What the crash tests share: a terminal's files and its commands as child processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from firmware.issuing.layout import World
from terminal.journal.crashpoints import ENVIRONMENT


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        return json.loads(self.stdout.strip().splitlines()[-1])


@dataclass
class Terminal:
    """One terminal's files (configuration, journal) and a way to run its commands as a new process each time."""

    config: Path
    journal: Path
    world: World

    def run(self, *args: str, crash_at: str | None = None, timeout: float = 60) -> Run:
        env = {k: v for k, v in os.environ.items() if k != ENVIRONMENT}
        if crash_at is not None:
            env[ENVIRONMENT] = crash_at
        done = subprocess.run([sys.executable, "-m", "terminal.cli", "--config", str(self.config), *args],
                              capture_output=True, text=True, env=env, timeout=timeout)
        return Run(done.returncode, done.stdout, done.stderr)


