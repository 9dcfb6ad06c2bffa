"""Database engines, transactions and migrations shared by the services (SQLAlchemy 2, Alembic).

PostgreSQL runs through psycopg2, made cooperative by eventlet.monkey_patch() (it
installs psycopg2's wait callback), so a slow query yields to the eventlet hub instead of stalling every other worker (bench/hub_stall.py
shows the difference). SQLite, the embedded single-node default, is local file I/O:
its calls are short and stay on the hub; transactions queue for its single writer on
a green semaphore (never in SQLite's own busy wait, which would block the hub) and
start with `BEGIN IMMEDIATE` in WAL mode, so writers never fail half-way.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
import weakref
from pathlib import Path

from eventlet.semaphore import Semaphore
from nameko.extensions import DependencyProvider
from sqlalchemy import DateTime, MetaData, TypeDecorator, create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING)


_engines: dict[str, Engine] = {}


def _casefold(value):
    return value.casefold() if isinstance(value, str) else value


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # let SQLAlchemy's BEGIN below rule
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")  # first: switching to WAL may itself wait for a lock
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        # SQLite's LIKE and lower() fold ASCII only; Czech text search needs full Unicode case folding
        dbapi_connection.create_function("helpdesk_casefold", 1, _casefold, deterministic=True)

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


IDLE_PING_SECONDS = 2.0


def _ping_when_idle(engine: Engine) -> None:
    """`pool_pre_ping` for connections that sat idle, not for every checkout.

    SQLAlchemy's `pool_pre_ping` sends a `SELECT 1` on every checkout: a round trip and a
    hub switch per transaction (docs/performance.md). A connection used moments ago is
    alive; one idle for `IDLE_PING_SECONDS` (a database restart, a firewall's idle timeout)
    is pinged, and a dead one makes the pool connect afresh (the "pessimistic disconnect
    handling" recipe of SQLAlchemy's pooling docs). A connection that dies while busy
    fails its statement once and is discarded by the pool.
    """
    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection, record, _proxy):
        if time.monotonic() - record.info.get("idle_since", float("inf")) < IDLE_PING_SECONDS:
            return
        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
            dbapi_connection.rollback()  # leave no transaction open (a unit of work may want autocommit)
        except Exception as exc:
            raise DisconnectionError(f"stale pooled connection: {exc}") from exc


def normalise_url(url: str) -> str:
    """`postgresql://` means psycopg2 here (SQLAlchemy 2.1 would pick psycopg 3, which eventlet can't green)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def get_engine(url: str, **kwargs) -> Engine:
    """One engine per URL per process."""
    url = normalise_url(url)
    if url in _engines:
        return _engines[url]
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **kwargs)
        _sqlite_setup(engine)
    elif url.startswith("sqlite"):  # in memory: one connection, nothing to go stale
        engine = create_engine(url, **kwargs)
    else:
        if url.startswith("postgresql"):
            kwargs.setdefault("pool_size", 20)
            kwargs.setdefault("max_overflow", 10)
        kwargs.setdefault("pool_use_lifo", True)  # hot connections first: the idle ones may go stale
        engine = create_engine(url, **kwargs)
        _ping_when_idle(engine)
    _engines[url] = engine
    return engine


def dialect_insert(dialect: str):
    """The INSERT construct of `dialect` (PostgreSQL or SQLite), which has ON CONFLICT clauses: for
    rows that two replicas may create at the same moment."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def session_factory(url: str) -> sessionmaker:
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


_sqlite_writers: dict[str, Semaphore] = {}


def _writer_lock(engine):
    """SQLite has one writer at a time: green threads queue for it here, cooperatively, instead of
    blocking the whole hub inside SQLite's busy wait. Other databases lock rows themselves."""
    if engine.dialect.name != "sqlite":
        return contextlib.nullcontext()
    key = str(engine.url)
    if key not in _sqlite_writers:
        _sqlite_writers[key] = Semaphore(1)
    return _sqlite_writers[key]


@contextlib.contextmanager
def _driver_autocommit(conn):
    """psycopg2's own autocommit flag on `conn`'s driver connection for the block, set and cleared on the
    client: SQLAlchemy's AUTOCOMMIT isolation level would cost a SET round trip on every return to the pool."""
    dbapi = conn.connection.dbapi_connection
    dbapi.autocommit = True
    try:
        yield
    finally:
        try:
            dbapi.autocommit = False
        except Exception:  # a broken connection: never back to the pool in autocommit
            conn.invalidate()


@contextlib.contextmanager
def transaction(factory: sessionmaker, one_statement: bool = False):
    """A session whose work commits together or not at all (not nestable on SQLite).

    `one_statement=True` is for a unit of work that writes with one statement (reads
    around it are fine): on PostgreSQL its connection is in autocommit, since the
    statement is atomic by itself, which saves the round trips of BEGIN and COMMIT
    (psycopg2 sends BEGIN on its own). `session.info["one_statement"]` tells the work."""
    engine = factory.kw["bind"]
    if one_statement and engine.dialect.name == "postgresql":
        session: Session = factory()
        session.info["one_statement"] = True
        try:
            with session.begin():
                with _driver_autocommit(session.connection()):
                    yield session
        finally:
            session.close()
        return
    with _writer_lock(engine):
        session = factory()
        try:
            with session.begin():
                yield session
        finally:
            session.close()


@contextlib.contextmanager
def statements(engine):
    """A plain Core connection, without a session, for work whose every write is one statement atomic by itself
    (a lookup and perhaps one UPDATE). PostgreSQL: autocommit, so no BEGIN and COMMIT round trips; SQLite:
    one transaction under the writer lock, as `transaction` takes it."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn, _driver_autocommit(conn):
            yield conn
        return
    with _writer_lock(engine), engine.begin() as conn:
        yield conn


class Prepared:
    """A Core statement that PostgreSQL parses and plans once per connection: `PREPARE` on a connection's first
    use, `EXECUTE` by name after. For the hottest statements (the API token lookup, a ticket's creation, the
    relay's read): their planning cost the server more than running them. Other dialects run the statement
    as it is. Its parameters are values, not expanding lists (an array and `= ANY` instead of `IN`). Behind
    a pooler that shares server sessions between clients (PgBouncer's transaction mode) prepared statements
    don't work: point the services at PostgreSQL itself.

    `execute(conn, params)` gives a result with the statement's column names; values come as the driver
    gives them (bind processors run, result processors don't)."""

    _known: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # driver connection -> names prepared on it

    def __init__(self, name: str, statement):
        self.name = name
        self.statement = statement
        self._sql = None

    def execute(self, conn: Connection, params: dict):
        if conn.dialect.name != "postgresql":
            return conn.execute(self.statement, params)
        if self._sql is None:
            from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2

            compiled = self.statement.compile(dialect=PGDialect_psycopg2(paramstyle="numeric_dollar"))
            processors = compiled._bind_processors
            self._order = [(key, processors.get(key)) for key in compiled.positiontup]
            self._execute = f"EXECUTE {self.name}({', '.join(['%s'] * len(self._order))})" if self._order \
                else f"EXECUTE {self.name}"
            self._sql = compiled.string
        dbapi = conn.connection.dbapi_connection
        done = self._known.setdefault(dbapi, set())
        if self.name not in done:
            with dbapi.cursor() as cursor:
                cursor.execute(f"PREPARE {self.name} AS {self._sql}")
            done.add(self.name)
        values = tuple(params[k] if process is None else process(params[k]) for k, process in self._order)
        return conn.exec_driver_sql(self._execute, values)


def migrate(url: str, script_location: str, revision: str = "head") -> None:
    """Bring one service's database to `revision` with its Alembic scripts."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", script_location)
    engine = cfg.attributes["engine"] = get_engine(url)
    if engine.dialect.name != "postgresql":
        command.upgrade(cfg, revision)  # SQLite: one file per process's data folder
        return
    # every replica migrates at start: one at a time per database, the others then find it at head
    with engine.connect() as lock:
        lock.exec_driver_sql("SELECT pg_advisory_lock(7370821)")
        try:
            command.upgrade(cfg, revision)
        finally:
            lock.exec_driver_sql("SELECT pg_advisory_unlock(7370821)")
            lock.commit()


class Database:
    """What a worker gets from the `Database` dependency: transactions on its service's store."""

    def __init__(self, sessions: sessionmaker, metadata: MetaData):
        self.sessions = sessions
        self.metadata = metadata

    def transaction(self, one_statement: bool = False):
        return transaction(self.sessions, one_statement)


class DatabaseProvider(DependencyProvider):
    """One engine (and pool) per process, a session per unit of work."""

    def __init__(self, service: str, metadata: MetaData):
        self.service = service
        self.metadata = metadata
        self.sessions = None

    def setup(self):
        from helpdesk.common.config import from_container
        from helpdesk.common.observability import add_readiness_check

        if self.sessions is None:
            self.sessions = session_factory(from_container(self.container).database_url(self.service))
        add_readiness_check(f"database:{self.service}", self._ping)

    def _ping(self) -> None:
        with self.sessions.kw["bind"].connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def stop(self):
        from helpdesk.common.observability import remove_readiness_check

        remove_readiness_check(f"database:{self.service}")

    def get_dependency(self, worker_ctx):
        return Database(self.sessions, self.metadata)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every dialect (SQLite keeps them naive otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            value = value.astimezone(dt.timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value


def run_alembic_env(metadata: MetaData) -> None:
    """Body of every service's migrations/env.py: migrate the engine handed over by `migrate()`."""
    from alembic import context

    engine = context.config.attributes.get("engine")
    if engine is None:  # plain `alembic` command line: take the URL from alembic.ini
        engine = get_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata,
                          render_as_batch=engine.dialect.name == "sqlite", compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
