"""Every file docuhooks creates in its data directory is 0600, every directory 0700, whatever
the umask: the database holds password hashes and encrypted secrets, `secret.key` their key."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from docuhooks import cli
from docuhooks.demo.bootstrap import DemoState, prepare_data_dir, write_receiver_answers
from docuhooks.identity.secrets import SecretBox
from docuhooks.store.database import Database
from docuhooks.store.private_files import write_private_file


@pytest.fixture(params=[0o022, 0o000, 0o277], ids=["umask-022", "umask-000", "umask-277"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """The common default, the loosest, and one strict enough to take the owner's own bits."""
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def assert_private_tree(root: Path) -> list[str]:
    """Every directory under `root` (itself included) is 0700 and every file 0600."""
    assert mode(root) == 0o700, root
    seen = []
    for directory, subdirectories, files in os.walk(root):
        for name in subdirectories:
            assert mode(Path(directory) / name) == 0o700, name
        for name in files:
            assert mode(Path(directory) / name) == 0o600, (
                f"{name} is {oct(mode(Path(directory) / name))}"
            )
            seen.append(name)
    return sorted(seen)


async def test_the_sqlite_database_and_its_wal_and_shm_files_are_private(
    tmp_path: Path, umask: int
) -> None:
    data = tmp_path / "data" / "nested"
    db = Database.from_url(f"sqlite:///{data / 'docuhooks.db'}")
    try:
        async with db.transaction() as conn:
            await conn.execute(sa.text("CREATE TABLE t (x TEXT)"))
            await conn.execute(sa.text("INSERT INTO t VALUES ('a row')"))
        # Checked while the database is open, when SQLite keeps its -wal and -shm files.
        files = assert_private_tree(tmp_path / "data")
        assert {"docuhooks.db", "docuhooks.db-wal", "docuhooks.db-shm"} <= set(files)
    finally:
        await db.dispose()


def test_the_generated_secret_key_is_private(tmp_path: Path, umask: int) -> None:
    SecretBox.for_data_dir("", tmp_path / "data")
    assert assert_private_tree(tmp_path / "data") == ["secret.key"]


def test_an_existing_directory_keeps_the_operators_mode(tmp_path: Path, umask: int) -> None:
    data = tmp_path / "data"
    data.mkdir()
    os.chmod(data, 0o750)  # e.g. a packager's choice, shared with a backup group
    SecretBox.for_data_dir("", data)
    assert mode(data) == 0o750
    assert mode(data / "secret.key") == 0o600


def test_a_whole_installation_made_from_the_command_line_is_private(
    tmp_path: Path, umask: int
) -> None:
    data = tmp_path / "docuhooks-data"
    env = {"DOCUHOOKS_DATA_DIR": str(data), "DOCUHOOKS_SECRET_KEY": ""}
    created = CliRunner().invoke(cli.main, ["db", "upgrade"], env=env)
    assert created.exit_code == 0, created.output
    result = CliRunner().invoke(
        cli.main,
        ["admin", "create-site", "Acme", "--base-url", "https://acme.example"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    files = assert_private_tree(data)
    assert "docuhooks.db" in files and "secret.key" in files


def test_the_demo_directory_is_private(tmp_path: Path, umask: int) -> None:
    demo = tmp_path / "docuhooks-demo"
    prepare_data_dir(demo, reset=False)
    write_receiver_answers(demo, date(2026, 1, 31))
    DemoState(server_port=1, receiver_port=2, auth_method="HMAC").write(demo)
    write_private_file(demo / "letter-v1.docx", b"PK\x03\x04")
    assert assert_private_tree(demo) == [
        "demo-state.json",
        "letter-v1.docx",
        "receiver-answers.json",
    ]


def test_rewriting_a_file_makes_it_private(tmp_path: Path) -> None:
    path = tmp_path / "receiver-secrets.txt"
    path.write_text("old")
    os.chmod(path, 0o644)
    write_private_file(path, "new")
    assert mode(path) == 0o600 and path.read_text() == "new"
