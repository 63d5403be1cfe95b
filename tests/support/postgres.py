"""A throwaway PostgreSQL cluster for the tests (and the benches): Debian's binaries, loopback only.

``initdb`` and ``pg_ctl`` refuse to run as root, and CI runs as root: there the cluster belongs to the
``postgres`` user (``runuser``); otherwise to the current user. The cluster listens on 127.0.0.1 on a
free port and asks for a password over TCP (SCRAM, as a managed server does; the admin connection
uses the socket in the cluster's folder), and is stopped and removed when the session ends. Every
test gets an empty database of its own: a new one, or one a finished test emptied (its schema
dropped and made again: milliseconds, where ``CREATE DATABASE`` takes up to a second on a busy machine).

Registered as a pytest plugin by ``tests/conftest.py``; the cluster starts only when a test asks for it.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import asyncpg
import pytest

from tests.support.servers import free_port

USER = "reactor"
PASSWORD = "c0rrect h@rse:b/ttery?"  # needs quoting in a URL


def binaries() -> Path:
    """The ``bin`` folder of the newest PostgreSQL installed (``/usr/lib/postgresql/*/bin``)."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    if not found:
        raise RuntimeError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run scripts/install-system-deps")
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)


class Cluster:
    """One PostgreSQL server in a temporary folder. ``durable=False`` (the tests) turns off fsync."""

    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable
        self.bin = binaries()
        self.root = Path(tempfile.mkdtemp(prefix="reactor-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self._as_postgres = os.geteuid() == 0
        self._names = itertools.count(1)
        self._emptied: list[str] = []

    def _run(self, *argv: str) -> None:
        cmd = [str(self.bin / argv[0]), *argv[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()}\n{tail}")

    def start(self) -> None:
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        pwfile = self.root / "password"
        pwfile.write_text(PASSWORD + "\n")
        if self._as_postgres:
            shutil.chown(pwfile, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
                  "-U", USER, "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions")
        self.port = free_port()
        options = [
            "-c listen_addresses=127.0.0.1",
            f"-p {self.port}",
            f"-c unix_socket_directories={self.root}",
            "-c max_connections=200",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c full_page_writes=off"]
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60",
                  "-o", " ".join(options), "start")

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str, *, password: str | None = PASSWORD) -> str:
        """The URL of ``database`` over TCP, with the password in it (``password=None``: without)."""
        secret = "" if password is None else ":" + quote(password, safe="")
        return f"postgresql://{USER}{secret}@127.0.0.1:{self.port}/{database}"

    async def admin(self) -> asyncpg.Connection:
        """A connection to the ``postgres`` database over the cluster's socket (no password)."""
        return await asyncpg.connect(host=str(self.root), port=self.port, user=USER, database="postgres")

    async def create_database(self) -> str:
        """A new empty database; its name."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        conn = await self.admin()
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return name

    @contextlib.asynccontextmanager
    async def database(self) -> AsyncIterator[str]:
        """An empty database for the block (its name); emptied afterwards for the next one, or dropped
        when that fails (the block dropped it, or left a session that holds locks)."""
        name = self._emptied.pop() if self._emptied else await self.create_database()
        try:
            yield name
        finally:
            if await self._empty(name):
                self._emptied.append(name)
            else:
                await self.drop_database(name)

    async def _empty(self, name: str) -> bool:
        try:
            conn = await asyncpg.connect(host=str(self.root), port=self.port, user=USER, database=name)
        except (OSError, asyncpg.PostgresError):
            return False
        try:
            await conn.execute("SET lock_timeout = '2s'")
            await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
                               " AND pid <> pg_backend_pid()")
            await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
            return True
        except asyncpg.PostgresError:
            return False
        finally:
            await conn.close()

    @contextlib.asynccontextmanager
    async def login_role(self, role: str, password: str) -> AsyncIterator[str]:
        """A login role ``role`` (SCRAM password ``password``, as an Entra principal mapped to a role of
        Azure Database for PostgreSQL is) owning a new database, for the block: the database's URL
        without a password. Both dropped afterwards; ``ALTER ROLE`` in the block changes the password."""
        name = await self.create_database()
        conn = await self.admin()
        try:
            literal = await conn.fetchval("SELECT quote_literal($1::text)", password)
            await conn.execute(f'CREATE ROLE "{role}" LOGIN PASSWORD {literal}')
            await conn.execute(f'ALTER DATABASE "{name}" OWNER TO "{role}"')
        finally:
            await conn.close()
        try:
            yield f"postgresql://{quote(role, safe='')}@127.0.0.1:{self.port}/{name}"
        finally:
            await self.drop_database(name)
            conn = await self.admin()
            try:
                await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
            finally:
                await conn.close()

    async def drop_database(self, name: str) -> None:
        """Drop ``name``, ending the sessions still connected to it."""
        conn = await self.admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """The session's PostgreSQL server (started on first use)."""
    cluster = Cluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def postgres_url(postgres_cluster: Cluster) -> AsyncIterator[str]:
    """``postgresql://…`` (password included) of an empty database of this test's own."""
    async with postgres_cluster.database() as name:
        yield postgres_cluster.url(name)
