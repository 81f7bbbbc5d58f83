"""The journal on Postgres (``--state postgresql://...``): many machines, one journal.

The operations and their rules are ``policy.py`` (shared with SQLite, ``journal.py``); this
module connects with psycopg 3 (imported only here, only when a ``postgresql://`` URL is
given: the default install does not need it), creates or migrates the schema, and runs
``sql/postgres.sql``'s named queries.

- **Schema**: created on first open in one transaction under an advisory lock
  (``pg_advisory_xact_lock``), so workers opening a fresh database at the same moment wait for
  the first instead of racing on ``CREATE TABLE``. The version lives in ``wanrecipe_schema``;
  a newer one than this code knows is refused.
- **Invariant**: the partial unique index ``attempts_one_live`` (one intent/submitted attempt
  per content key); a claim is the insert that index may refuse (in a savepoint, so the
  transaction goes on to read who holds the key).
- **Clock**: every time the journal records or compares (created, submitted, finished,
  heartbeats, the 24 h age, the heartbeat TTL) is the database's ``transaction_timestamp()``,
  read once per transaction: the workers' own clocks never matter.
- **Durability**: the intent commits with ``synchronous_commit`` on (the default: the commit
  waits for the WAL flush); the later commits of a task use ``SET LOCAL synchronous_commit TO
  OFF``, for the reason SQLite skips their fsync (docs/state.md, "Why each fsync").
- **Waits are bounded**: ``lock_timeout`` 30 s (as SQLite's busy timeout) and
  ``idle_in_transaction_session_timeout`` 60 s, set on every connection.
- **Secrets**: the URL's password never reaches a message, record or log (``location`` is the
  URL without it; errors are scrubbed of it).

Thread safety: one connection per journal behind a lock held for each method, as for SQLite;
a connection the server dropped is replaced at the start of the next transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from ..errors import StoreError
from .blobs_api import Blobs
from .dialect import Row, queries, statements
from .liveness import heartbeat_ttl
from .policy import JournalBase
from .records import WouldWait, worker_host

#: The Postgres schema's version (its own numbering; the SQLite file has ``user_version``).
PG_SCHEMA_VERSION: Final = 1


def redact_dsn(url: str) -> str:
    """``url`` without its password (and without a password in its query string)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}@{hostport}" if user else hostport
    query = "&".join(
        f"{k}=<redacted>" if k.lower() == "password" else f"{k}={v}"
        for k, _, v in (item.partition("=") for item in parts.query.split("&") if item)
    )
    return parts._replace(netloc=netloc, query=query, fragment="").geturl()


def _password(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.password:
        return unquote(parts.password)
    for item in parts.query.split("&"):
        name, _, value = item.partition("=")
        if name.lower() == "password" and value:
            return unquote(value)
    return None


class _PgTx:
    def __init__(self, conn: Any, sql: dict[str, str], clock: Callable[[], float] | None):
        self._conn = conn
        self._sql = sql
        self._clock = clock
        self._now: float | None = None

    def _execute(self, name: str, params: dict[str, Any]) -> Any:
        return self._conn.execute(self._sql[name], params)

    def one(self, name: str, **params: Any) -> Row | None:
        cur = self._execute(name, params)
        return cur.fetchone() if cur.description else None

    def all(self, name: str, **params: Any) -> list[Row]:
        return list(self._execute(name, params).fetchall())

    def run(self, name: str, **params: Any) -> int:
        return int(self._execute(name, params).rowcount)

    def claim(self, name: str, **params: Any) -> Row | None:
        import psycopg

        try:
            with self._conn.transaction():  # a savepoint: a refusal undoes this statement only
                return self.one(name, **params)
        except psycopg.errors.UniqueViolation:
            return None

    def now(self) -> float:
        if self._now is None:
            if self._clock is not None:
                self._now = self._clock()
            else:
                row = self.one("now")
                assert row is not None
                self._now = float(row["now"])
        return self._now

    def lock_key(self, key: str) -> None:
        self._execute("lock_key", {"key": key})


class _Postgres:
    """The Postgres dialect: one psycopg connection, explicit transactions."""

    name = "postgres"
    local = False  # a round trip to the server

    def __init__(
        self, url: str, clock: Callable[[], float] | None, connect_timeout_s: float, create: bool
    ) -> None:
        self._url = url
        self.location = redact_dsn(url)
        self._secret = _password(url)
        self._clock = clock
        self._timeout = connect_timeout_s
        self._sql = queries("postgres")
        self._lock = threading.RLock()
        self.conn: Any = None
        self._closed = False
        with self._lock:
            self._connect()
            try:
                self._migrate(create)
            except BaseException:
                self.close()
                raise

    def _connect(self) -> None:
        try:
            import psycopg
            from psycopg.rows import dict_row
        except ImportError as exc:  # pragma: no cover - the team extra is missing
            raise StoreError(
                f"{self.location}: a postgresql:// state needs psycopg 3: "
                "pip install 'wanrecipe[team]'"
            ) from exc
        with self.translated():
            self.conn = psycopg.connect(
                self._url,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=max(1, int(self._timeout)),
                application_name="wanrecipe",
            )
            # As SQLite's busy timeout: a claim waiting on another worker's transaction
            # gives up after 30 s with an error instead of hanging; a worker that hangs
            # inside a transaction loses it (and its locks) after a minute.
            self.conn.execute(self._sql["timeouts"])

    def _migrate(self, create: bool) -> None:
        with self.translated():
            with self.conn.transaction():
                present = self.conn.execute(self._sql["schema_exists"]).fetchone()["present"]
                version = None
                if present:
                    row = self.conn.execute(self._sql["schema_version"]).fetchone()
                    version = row["version"] if row else None
            if version == PG_SCHEMA_VERSION:
                return
            if version is not None and version > PG_SCHEMA_VERSION:
                raise StoreError(
                    f"{self.location} has journal schema version {version}, newer than this "
                    f"wanrecipe understands ({PG_SCHEMA_VERSION}); upgrade wanrecipe"
                )
            if not create:
                raise StoreError(
                    f"{self.location} holds no wanrecipe journal (nothing has run there yet)"
                )
            with self.conn.transaction():
                self.conn.execute(self._sql["schema_lock"])
                for statement in statements(self._sql["schema"]):
                    self.conn.execute(statement)
                self.conn.execute(self._sql["set_schema_version"], {"version": PG_SCHEMA_VERSION})

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self.conn is not None:
                self.conn.close()

    @contextmanager
    def _tx(self, durable: bool) -> Iterator[_PgTx]:
        with self._lock, self.translated():
            if self._closed:
                raise StoreError(f"{self.location}: the journal is closed")
            if self.conn is None or self.conn.closed or self.conn.broken:
                self._connect()  # the server dropped us (a restart, a fail-over): once more
            with self.conn.transaction():
                if not durable:
                    self.conn.execute(self._sql["not_durable"])
                yield _PgTx(self.conn, self._sql, self._clock)

    def write(self, *, durable: bool = True, quick: bool = False) -> Any:
        if quick:  # every write waits for a round trip to the server
            raise WouldWait(self.location)
        return self._tx(durable)

    def read(self) -> Any:
        return self._tx(True)

    @contextmanager
    def translated(self) -> Iterator[None]:
        """The one boundary where psycopg errors become StoreError, without the password."""
        import psycopg

        try:
            yield
        except psycopg.Error as exc:
            message = str(exc).strip() or type(exc).__name__
            if self._secret:
                message = message.replace(self._secret, "<redacted>")
            raise StoreError(f"{self.location}: {message}") from None


class PostgresJournal(JournalBase):
    """The attempts database on Postgres. See the module docstring.

    ``clock``: None (the database's clock) but for tests that need to move time.
    ``create=False`` refuses a database without the schema instead of creating it (``plan``
    never creates state).
    """

    def __init__(
        self,
        url: str,
        blobs: Blobs,
        *,
        clock: Callable[[], float] | None = None,
        heartbeat_ttl_s: float | None = None,
        connect_timeout_s: float = 10.0,
        create: bool = True,
    ) -> None:
        ttl = heartbeat_ttl(heartbeat_ttl_s)
        db = _Postgres(url, clock, connect_timeout_s, create)
        super().__init__(db, blobs, host=worker_host(), heartbeat_ttl_s=ttl)

    def __enter__(self) -> PostgresJournal:
        return self
