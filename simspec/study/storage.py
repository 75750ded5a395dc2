"""Where trials live: a SQLite file in the run folder by default (rerun = resume), or any
Optuna storage URL (PostgreSQL for many hosts). Every worker opens its own connection."""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path

from simspec.errors import InputError

DB_NAME = "study.db"


def default_url(out: Path) -> str:
    return f"sqlite:///{(out / DB_NAME).resolve()}"


# Heartbeats on shared storage (a URL given with --storage: other hosts or runs may use it):
# every running trial records a beat every HEARTBEAT_S seconds, and a trial whose last beat is
# older than GRACE_S (its worker was killed, or its host died) is marked FAIL by the next worker
# that starts a trial (Optuna's fail_stale_trials), which enqueues its parameters again
# (RetryFailedTrialCallback, up to MAX_RETRY times): the killed trial is re-run, not lost.
# The run folder's own SQLite file has one owner, which fails a killed run's trials at start.
HEARTBEAT_S = int(os.environ.get("SIMSPEC_HEARTBEAT_S", "10"))
GRACE_S = int(os.environ.get("SIMSPEC_HEARTBEAT_GRACE_S", "60"))
MAX_RETRY = 2


def heartbeat_kwargs() -> dict:
    import inspect

    import optuna

    retry = optuna.storages.RetryFailedTrialCallback(max_retry=MAX_RETRY)
    params = inspect.signature(optuna.storages.RDBStorage.__init__).parameters
    cb = "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in params else "failed_trial_callback"
    return {"heartbeat_interval": max(1, HEARTBEAT_S), "grace_period": max(1, GRACE_S), cb: retry}


def open_storage(url: str, heartbeat: bool = False):
    """An RDB storage with settings that suit several local processes on one file or server;
    `heartbeat`: with Optuna's heartbeat and retry of stale trials (shared storage)."""
    import optuna

    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 120}}
    else:
        kwargs = {"pool_pre_ping": True}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # heartbeats and the retry callback are "experimental"
            storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs, **(heartbeat_kwargs() if heartbeat else {}))
    except Exception as exc:  # bad URL, missing driver, server down: one line, not a traceback
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(None, "--storage", f"cannot open storage {redact(url)}: {reason}") from None
    if url.startswith("sqlite"):
        _sqlite_wal(storage.engine, immediate=heartbeat)
    return storage


def _sqlite_wal(engine, immediate: bool = False) -> None:
    """WAL journal + synchronous=NORMAL: a trial's dozen commits cost no fsync each (they
    were ~10% of a study's time), and a committed trial still survives a killed process.

    `immediate` (a shared --storage, where independent runs pop enqueued trials): every
    transaction begins IMMEDIATE (it takes the write lock at its start). Optuna's RDB
    storage reads a trial's state and then updates it in one transaction, trusting row locks
    that SQLite does not have, and pysqlite runs the read outside any transaction. Two workers
    could then both pop the same enqueued trial (a baseline) and the second failed with "Trial#0
    has already finished" (2-4 runs in 25 of tests/test_confident_wrong.py's shared-storage test).
    (SQLAlchemy's documented recipe for pysqlite: driver autocommit, BEGIN emitted by us.) It
    serialises readers too (a 1000-trial 2-worker study: 40 s -> 72 s), so the run folder's own
    storage does without: its workers start after the enqueued trials are taken (runner._run)."""
    from sqlalchemy import event

    def on_connect(dbapi_conn, _record) -> None:
        if immediate:
            dbapi_conn.isolation_level = None  # SQLAlchemy's "begin" below starts each transaction
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    def on_begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(engine, "connect", on_connect)
    if immediate:
        event.listen(engine, "begin", on_begin)
    engine.dispose()  # connections opened while creating the tables reconnect with the pragmas


def redact(url: str) -> str:
    """A URL without its password, for messages."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


def fail_stale_heartbeats(study) -> int:
    """Shared storage: RUNNING trials whose heartbeat stopped more than GRACE_S ago are marked
    FAIL and their parameters enqueued again; returns how many were failed."""
    import optuna
    from optuna.trial import TrialState

    def running() -> set[int]:
        return {t._trial_id for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}

    before = running()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
        _fail_beatless(study)
    return len(before - running())


def _fail_beatless(study) -> None:
    """Optuna's check skips RUNNING trials that never recorded a heartbeat: a worker killed
    between creating its trial and the first beat (the beat thread starts right after) leaves
    one RUNNING for ever. A simspec worker beats within milliseconds of starting a trial, so
    one without any beat GRACE_S after it started is dead: failed and retried alike."""
    import copy
    import datetime

    import optuna
    from optuna.trial import TrialState
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    storage = study._storage
    rdb = getattr(storage, "_backend", storage)  # the RDBStorage behind Optuna's cache
    try:
        from optuna.storages._rdb.models import TrialHeartbeatModel

        with rdb.engine.connect() as c:
            beating = {r[0] for r in c.execute(text(f"SELECT trial_id FROM {TrialHeartbeatModel.__tablename__}"))}
    except (ImportError, SQLAlchemyError):  # another storage layout: leave it to Optuna's own check
        return
    now = datetime.datetime.now()
    callback = rdb.get_heartbeat_stale_trial_callback()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        started = t.datetime_start
        if t._trial_id in beating or started is None or (now - started).total_seconds() <= GRACE_S:
            continue
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL) and callback is not None:
                callback(study, copy.deepcopy(storage.get_trial(t._trial_id)))
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker got there first


def fail_stale_running(storage, study_id: int) -> int:
    """Trials left RUNNING by a killed run (only safe when this process owns the storage)."""
    from optuna.trial import TrialState

    n = 0
    for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        try:
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            n += 1
        except Exception:
            pass
    return n


@contextmanager
def run_lock(url: str):
    """One run at a time on a run folder's own SQLite study: a second `simspec study` on the same
    --out would compute its own missing trials (ending with twice --trials) and fail the first
    run's running trials as stale, so it is refused, naming the running one. The lock is an
    flock on study.db.lock, released by the kernel when its holder dies (no stale lock)."""
    db = Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None
    try:
        import fcntl
    except ImportError:  # no flock on this system: no lock
        fcntl = None  # type: ignore[assignment]
    if db is None or fcntl is None or str(db) in ("", ":memory:"):
        yield
        return
    lock = db.with_name(db.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise InputError(str(lock), None, f"cannot create the run lock ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise InputError(str(db.parent), None, f"another `simspec study` (pid {other}) is running this study "
                                                   "here; wait for it to finish (a rerun then resumes), or give another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock
