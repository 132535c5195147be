"""Files and directories in the data directory are the service user's alone.

The data directory holds the SQLite database (users' password hashes, every webhook's secret,
encrypted, and the documents), the key those secrets are encrypted with, and the demo's
password and API token. So every file docuhooks creates there is 0600 and every directory
0700, whatever the process's umask: the mode is given when the file is created and set again
with `fchmod`, since a umask can only take bits away and a strict one could leave a file the
service itself cannot read back. Files and directories that already exist keep the mode the
operator gave them.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def make_private_dir(path: Path) -> None:
    """Create `path` and any missing parents, each 0700; existing ones are left as they are."""
    missing: list[Path] = []
    cursor = path
    while not cursor.exists() and cursor != cursor.parent:
        missing.append(cursor)
        cursor = cursor.parent
    # One at a time from the top, each set to 0700 before the next goes in: under a strict
    # umask, a parent made by `mkdir(parents=True)` could refuse its own child.
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(directory, PRIVATE_DIR_MODE)
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")


def create_private_file(path: Path) -> None:
    """Create `path` empty and 0600 unless it exists (then it is left alone)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)


def write_private_file(path: Path, content: bytes | str) -> None:
    """Write `content` to `path`, 0600 before the first byte is written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(fd, PRIVATE_FILE_MODE)
        out.write(content.encode("utf-8") if isinstance(content, str) else content)
