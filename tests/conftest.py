"""Fixtures: real Dovecot, real PostgreSQL, SQLite; nothing mocked but injected faults.

Tests that need a server fail, not skip, when $CI is set.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from batching import Desk
from helpers import Cli, ImapAccount, write_config
from servers import postgres
from servers.dovecot import Dovecot, dovecot_binary

IN_CI = bool(os.environ.get("CI"))
#: the session-end check that no process the tests started is left running (leaks.py)
pytest_plugins = ("leaks",)


def need_server(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI is set: a missing server is a failure)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    if not dovecot_binary():
        need_server("dovecot is not installed")
    server = Dovecot().start()
    yield server
    server.cleanup()


@pytest.fixture
def imap(dovecot: Dovecot, tmp_path: Path) -> Iterator[ImapAccount]:
    """A fresh Dovecot user with an empty INBOX."""
    user, password = dovecot.take_user()
    account = ImapAccount(dovecot, user, password, tmp_path)
    yield account
    account.close()


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_dovecot(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    if not dovecot_binary():
        need_server("dovecot is not installed")
    d = tmp_path_factory.mktemp("tls")
    # issued for the IP only: connecting by the name "localhost" is a wrong host
    cert = tls_ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(d / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    server = Dovecot(tls_cert=d / "cert.pem", tls_key=d / "key.pem").start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def ca_file(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def pg_available() -> bool:
    why = postgres.available()
    return why is None


def _pg_database() -> Iterator[str]:
    """A fresh database on the test PostgreSQL, dropped afterwards."""
    why = postgres.available()
    if why:
        need_server(f"PostgreSQL at {postgres.ADMIN_URL} does not answer: {why}")
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/mailcase.db"
    else:
        yield from _pg_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/mailcase.db"


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _pg_database()


#: fixtures that start or reach a server: their tests are not in the fast lane
SERVER_FIXTURES = frozenset({"dovecot", "imap", "tls_dovecot", "own_dovecot", "pg_url", "pg_available"})
#: modules that are slow as a whole: daemon and crash harnesses in subprocesses, hostile
#: mail in bounded memory, property-based fuzzing, the token endpoint, mypy, the
#: operator's install checks and backups
SLOW_MODULES = frozenset({
    "test_backup", "test_check", "test_batch_workers", "test_chaos", "test_cluster", "test_crash", "test_crash_daemon", "test_crash_outbox", "test_daemon",
    "test_delivery", "test_faults", "test_fuzz", "test_hostile", "test_leaks", "test_oauth", "test_operations",
    "test_install", "test_reload", "test_supervision", "test_typing", "test_week",
})
#: single tests that run the whole desk end to end
SLOW_TESTS = frozenset({"test_a_pin_in_the_subject_is_accepted_and_redacted_from_everything",
                        # the README's first command, twice, each in its own process
                        "test_demo_runs_on_embedded_defaults",
                        # builds and installs a wheel with pip
                        "test_an_installed_wheel_finds_its_templates_without_the_checkout",
                        # the whole rules, auto-reply and scope corpora through classify and a cutoff, twice
                        "test_the_whole_corpus_is_judged_the_same_at_the_cutoff_both_ways"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test that needs a server (or runs on PostgreSQL) and the slow
    modules: the fast lane, ``tests/run --fast`` (``-m "not slow"``), is the unit, rules
    and CLI tests."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("db_url") == "postgresql"
        module = item.path.stem
        name = getattr(item, "originalname", item.name)
        if fixtures & SERVER_FIXTURES or on_postgres or module in SLOW_MODULES or name in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def desk_cli(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
             monkeypatch: pytest.MonkeyPatch) -> tuple[Desk, Cli]:
    """A desk with its directory, and the CLI on the same database (file transport, test clock, no stdin)."""
    desk = Desk(db_url, tmp_path)
    desk.directory()
    cfg = write_config(tmp_path / "c.toml", db_url, [], rules=desk.config.rules.model_dump(exclude_none=True),
                       outgoing={"from_address": "support@support.example", "file_dir": str(tmp_path / "outbox")})
    clock = tmp_path / "clock"
    monkeypatch.setenv("MAILCASE_TEST_CLOCK", str(clock))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    return desk, Cli(cfg, clock, capsys)
