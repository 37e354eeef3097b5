"""Engines for the ledger: SQLite files by default, PostgreSQL in production.

SQLite: WAL so readers never block the writer, and `BEGIN IMMEDIATE` so that a
transaction takes the write lock before it reads a balance — two processes can then
never both read "enough funds" and both write. A busy timeout turns lock waits into
waiting, not errors. PostgreSQL: READ COMMITTED plus a row lock on the budget
(see ledger.py), with retries on serialization failures and deadlocks.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from .errors import DatabaseUnavailable, SchemaBehind

DEFAULT_SQLITE_PATH = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "qgov" / "ledger.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def default_database_url() -> str:
    return os.environ.get("QGOV_DATABASE_URL") or f"sqlite:///{DEFAULT_SQLITE_PATH}"


def normalise_url(url: str) -> str:
    """Accept the URLs people paste (postgres://, postgresql://) and use psycopg 3 for them."""
    url = url.strip()
    url = re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)
    return url


# a URL make_url cannot parse: keep the scheme and what follows the last "@", hide the rest
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*:?/*)?.*@", re.DOTALL)


def redact(url: str) -> str:
    """The URL without its password, for messages, logs and exceptions. A URL SQLAlchemy cannot
    parse (a typo, a port that is not a number) is what people paste with a password in it most
    often: its user-info (everything before the last "@") is replaced by `***`."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return _USERINFO.sub(lambda m: f"{m.group(1) or ''}***@", url.strip())


def make_engine(url: str | None = None, *, pool_size: int = 16) -> Engine:
    """Create an engine; raises DatabaseUnavailable with a one-line reason for bad URLs."""
    raw = normalise_url(url or default_database_url())
    try:
        parsed = make_url(raw)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise DatabaseUnavailable(
            f"malformed database URL {redact(raw)!r}: expected sqlite:///PATH or postgresql://USER@HOST/DB"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # a pool as large as the operator's worker threads: overflow connections would be opened and
        # closed (with their PRAGMAs) on every busy moment
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                               pool_size=pool_size, max_overflow=pool_size * 2)
        _configure_sqlite(engine)
        return engine
    if backend == "postgresql":
        try:
            return create_engine(
                # No pool_pre_ping: it costs a round trip per transaction on the hot path.
                # A connection dropped by the server is retried by Ledger._transaction instead.
                parsed, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800,
                connect_args={"connect_timeout": 5},
            )
        except (ArgumentError, ImportError) as exc:
            raise DatabaseUnavailable(f"cannot use database URL {redact(raw)}: {exc}") from None
    raise DatabaseUnavailable(f"unsupported database {backend!r} in {redact(raw)}: use sqlite or postgresql")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not the driver, decide where transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        # Writers take the write lock before reading balances; readers (read_only) do not.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("qgov_read_only") else "BEGIN IMMEDIATE")


def read_only(engine: Engine) -> Connection:
    """A connection for reads: on SQLite it does not take the write lock."""
    return engine.connect().execution_options(qgov_read_only=True)


def driver_cursor(conn: Connection) -> Any:
    """A cursor of the driver's own connection under `conn`, inside the transaction SQLAlchemy began:
    the write fast paths hand it whole batches (`executemany`), which Core would split per row."""
    driver = conn.connection.driver_connection
    if driver is None:
        raise RuntimeError("the connection has been closed")
    return driver.cursor()


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def head_revision() -> str:
    """The newest migration revision this code expects."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(None)).get_current_head() or ""


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except OperationalError as exc:
        raise DatabaseUnavailable(f"cannot reach database {redact(str(engine.url))}: {first_line(exc)}") from None


def check_schema(engine: Engine) -> None:
    """Refuse to run against a schema older than the code: tell the user what to do."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        where = redact(engine.url.render_as_string(hide_password=False))
        if current is None:
            raise SchemaBehind(f"database {where} has no qgov schema: run `qgov db upgrade`")
        raise SchemaBehind(f"database {where} is at schema {current}, qgov needs {head}: run `qgov db upgrade`")


def migrations_directory() -> Path:
    """The Alembic migrations, package data of `governance` (governance/migrations, in the source tree
    a link to the repository's migrations/, the one copy; in a wheel, its files). QGOV_MIGRATIONS
    overrides it."""
    from importlib.resources import files

    # a package installed from a wheel or a source tree is on the file system: its Traversable is a Path
    root = Path(str(files("governance") / "migrations"))
    if not (root / "env.py").is_file():
        raise FileNotFoundError(f"qgov's migrations are missing from {root} (a broken install?)")
    return root


def alembic_config(engine_url: str | None):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    root = Path(os.environ.get("QGOV_MIGRATIONS") or migrations_directory())
    cfg = Config()
    cfg.set_main_option("script_location", str(root))
    if engine_url:
        cfg.set_main_option("sqlalchemy.url", engine_url.replace("%", "%%"))
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> str:
    """Bring the schema to `revision`; returns the revision reached."""
    from alembic import command

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (OperationalError, SQLAlchemyError) as exc:
        raise DatabaseUnavailable(f"cannot reach database {redact(str(engine.url))}: {first_line(exc)}") from None
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        _migration_lock(conn)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    reached = current_revision(engine) or "base"
    engine.dispose()
    return reached


MIGRATION_LOCK_KEY = 0x71676F76  # "qgov": the advisory lock every qgov migration takes on PostgreSQL


def _migration_lock(conn: Connection) -> None:
    """Make concurrent migrations (two operator replicas starting together) run one after the
    other, in the transaction that migrates: the second then reads the revision the first committed
    and has nothing to do. PostgreSQL: a transaction-scoped advisory lock (released at commit or
    rollback, also if the process dies). SQLite: the transaction began with BEGIN IMMEDIATE
    (`_configure_sqlite`), which already holds the database's write lock; a second migrator waits
    for it (busy timeout) before it reads the revision."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})


def downgrade(url: str | None, revision: str = "base") -> None:
    from alembic import command

    engine = make_engine(url)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        _migration_lock(conn)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
    engine.dispose()


def first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]
