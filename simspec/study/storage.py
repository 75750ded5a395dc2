"""Where trials live: a SQLite file in the run folder by default (rerun = resume), or any
Optuna storage URL (PostgreSQL for many hosts). Every worker opens its own connection."""

from __future__ import annotations

from pathlib import Path

from simspec.errors import InputError

DB_NAME = "study.db"


def default_url(out: Path) -> str:
    return f"sqlite:///{(out / DB_NAME).resolve()}"


def is_local(url: str, out: Path) -> bool:
    return url == default_url(out)


def open_storage(url: str):
    """An RDB storage with settings that suit several local processes on one file or server."""
    import optuna

    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 120}}
    else:
        kwargs = {"pool_pre_ping": True}
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as exc:  # bad URL, missing driver, server down: one line, not a traceback
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(None, "--storage", f"cannot open storage {redact(url)}: {reason}") from None
    if url.startswith("sqlite"):
        _sqlite_wal(storage.engine)
    return storage


def _sqlite_wal(engine) -> None:
    """WAL journal + synchronous=NORMAL: a trial's dozen commits cost no fsync each (they
    were ~10% of a study's time), and a committed trial still survives a killed process."""
    from sqlalchemy import event

    def on_connect(dbapi_conn, _record) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections opened while creating the tables reconnect with the pragmas


def redact(url: str) -> str:
    """A URL without its password, for messages."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


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
