"""Shared fixtures: service access (Kafka, MariaDB, Mosquitto) and small helpers.

A test that needs a service is marked (``kafka``, ``mariadb``, ``mosquitto``). Without the
service it is skipped, except under ``FABRIC_REQUIRE_SERVICES=1`` (CI), where a skip of a
service-marked test is turned into a failure.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICE_MARKERS = ("kafka", "mariadb", "mosquitto")
REQUIRE = os.environ.get("FABRIC_REQUIRE_SERVICES") == "1"


def need(what: str, why: str) -> None:
    """Skip (locally) or fail (CI) a test whose service is not there."""
    message = f"{what} not available: {why}"
    if REQUIRE:
        pytest.fail(f"FABRIC_REQUIRE_SERVICES=1 and {message}")
    pytest.skip(message)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if REQUIRE and report.skipped and any(item.get_closest_marker(m) for m in SERVICE_MARKERS):
        report.outcome = "failed"
        report.longrepr = f"service test skipped under FABRIC_REQUIRE_SERVICES=1: {report.longrepr}"


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}"


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float = 30.0,
    what: str = "condition",
) -> None:
    """Wait for an observable outcome (a row, a file, a count), polling; fail on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
def kafka_address() -> str:
    address = os.environ.get("FABRIC_KAFKA")
    if not address:
        need("Kafka", "FABRIC_KAFKA is not set (make test starts a broker)")
    host, _, port = address.partition(":")  # type: ignore[union-attr]
    if not port_open(int(port), host):
        need("Kafka", f"nothing listens on {address}")
    return address  # type: ignore[return-value]


def kafka_url(address: str) -> str:
    # fast group timings for tests (RECIPES.md: joins are slow with the defaults)
    return f"kafka://{address}?session_timeout_ms=6000&heartbeat_interval_ms=300"


MYSQL_USER = "fabric_test"
MYSQL_PASSWORD = "fabric-test-pw"


def _mysql_root(sql: str) -> None:
    subprocess.run(["mariadb", "-uroot", "-e", sql], check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="session")
def mysql_server() -> str:
    """An app user on the local MariaDB (root is socket-auth and used for set-up only)."""
    if os.environ.get("FABRIC_MYSQL"):
        return os.environ["FABRIC_MYSQL"]
    if not port_open(3306):
        need("MariaDB", "nothing listens on 127.0.0.1:3306")
    try:
        _mysql_root(
            f"CREATE USER IF NOT EXISTS '{MYSQL_USER}'@'127.0.0.1' IDENTIFIED BY '{MYSQL_PASSWORD}';"
            f"CREATE USER IF NOT EXISTS '{MYSQL_USER}'@'localhost' IDENTIFIED BY '{MYSQL_PASSWORD}';"
            f"GRANT ALL ON `fabric\\_t\\_%`.* TO '{MYSQL_USER}'@'127.0.0.1';"
            f"GRANT ALL ON `fabric\\_t\\_%`.* TO '{MYSQL_USER}'@'localhost';"
        )
    except (OSError, subprocess.SubprocessError) as exc:
        need("MariaDB", f"cannot create the test user as root: {exc}")
    return f"mysql://{MYSQL_USER}:{MYSQL_PASSWORD}@127.0.0.1:3306"


@pytest.fixture
def mysql_url(mysql_server: str) -> Iterator[str]:
    """A fresh database for one test, dropped afterwards."""
    name = f"fabric_t_{uuid.uuid4().hex[:10]}"
    if os.environ.get("FABRIC_MYSQL"):
        yield f"{mysql_server.rstrip('/')}"
        return
    _mysql_root(f"CREATE DATABASE `{name}`")
    try:
        yield f"{mysql_server}/{name}"
    finally:
        _mysql_root(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def mysql_database(mysql_server: str) -> Iterator[Callable[[], str]]:
    """A factory of fresh databases (several per test), all dropped afterwards."""
    made: list[str] = []

    def make() -> str:
        name = f"fabric_t_{uuid.uuid4().hex[:10]}"
        _mysql_root(f"CREATE DATABASE `{name}`")
        made.append(name)
        return f"{mysql_server}/{name}"

    yield make
    for name in made:
        _mysql_root(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture(scope="session")
def mosquitto() -> tuple[str, int]:
    if not port_open(1883):
        need("Mosquitto", "nothing listens on 127.0.0.1:1883")
    return ("127.0.0.1", 1883)


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[object]:
    from fabric.store.db import SqliteDatabase

    db = SqliteDatabase(str(tmp_path / "state.db"))
    await db.start()
    yield db
    await db.close()


def python(*args: str, **kw: object) -> subprocess.Popen[bytes]:
    """Start a Python child process with the project on its path."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, *args], env=env, **kw)  # type: ignore[call-overload]


# -- lifecycle harness (tests/tasks/harness.py): an App with every consumer running ---------
@pytest.fixture(scope="session")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fabric.testing.media import make_video

    return make_video(tmp_path_factory.mktemp("media") / "clip.mp4", 1.0, "160x120")


@pytest.fixture
def key() -> str:
    return base64.urlsafe_b64encode(b"k" * 32).decode()


@pytest.fixture
def harness(tmp_path: Path, key: str) -> Callable[..., Any]:
    from tests.tasks.harness import Harness

    def make(**kw: Any) -> Any:
        return Harness(tmp_path, secret_key=key, **kw)

    return make


@pytest.fixture
async def running(harness: Callable[..., Any]) -> AsyncIterator[Any]:
    async with harness() as h:
        yield h
