"""Files that hold a key, a code, a password hash or card data: 0600 in 0700 folders, from the moment they exist.

Why here and not only a umask: the world builder, the acquirer's instance and database and the wallets are also
created by code that is not one of our processes (the tests, the benchmarks, the Pi's install script), and a
process-wide umask must not be set by a library. So every writer of such a file goes through these helpers;
the programs' entry points add `private_umask()` for what they create without them (logs, sockets, SQLite's
side files). Creating with the final mode matters: a file written first and chmod-ed after is readable by
anyone in between.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700
UMASK = 0o077  # what FILE_MODE / DIR_MODE leave out: group and others
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_dir(path: Path, *, ours: bool = False) -> Path:
    """Create ``path`` and its missing parents 0700 (``mkdir -p`` would make the parents 0755). With ``ours``
    (a folder the program owns alone: an instance, the demo's folder) an existing one is tightened too."""
    missing = []
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile: keep theirs
            folder.mkdir(mode=DIR_MODE)
            folder.chmod(DIR_MODE)  # exact, whatever the umask
    if ours:
        tighten(path)
    return path


def tighten(path: Path) -> None:
    """Take group and others' bits off an existing file or folder of ours; a missing one is fine."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return
    if status.st_mode & UMASK and status.st_uid == os.geteuid():
        os.chmod(path, stat.S_IMODE(status.st_mode) & ~UMASK)


def private_file(path: Path) -> Path:
    """An empty 0600 file when missing (SQLite then gives its -wal and -shm the same mode), else the existing
    one tightened."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        tighten(path)
    return path


def private_database(path: Path) -> Path:
    """A SQLite file about to be opened: the main file private (created 0600 if new), and any side file an earlier
    run left (a -wal after a crash) tightened as well."""
    private_file(path)
    for suffix in SQLITE_SIDE_FILES:
        tighten(path.with_name(path.name + suffix))
    return path


def write_private(path: Path, data: str | bytes, *, mode: int = FILE_MODE) -> None:
    """Replace ``path`` atomically: a 0600 temporary (mkstemp's mode) in the same folder, fsync, rename, fsync
    the folder; a crash leaves the old file or the new one. ``mode`` (e.g. 0644 for a public CA list) is set on
    the temporary before the rename; the folder, when missing, is created 0700."""
    private_dir(path.parent)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data.encode("utf-8") if isinstance(data, str) else data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """For a program's ``main``: whatever the process creates meanwhile is its owner's alone. Restored on return,
    so a test that calls ``main`` in-process leaves its own umask as it was."""
    previous = os.umask(UMASK)
    try:
        yield
    finally:
        os.umask(previous)
