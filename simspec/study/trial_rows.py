"""A finished trial written as rows of Optuna's RDB schema, in one transaction.

Optuna's create-from-template goes through its ORM: per parameter a query for an earlier
distribution of that name, per attribute a lookup of an existing key, a flush, a count. That
was ~10 ms a trial here, a quarter of a 1000-trial study's wall time. The mirror
(simspec.study.mirror) has already checked the trial in memory (distributions, state), so its
rows are inserted as they are: one INSERT per table (table names from Optuna's own models, enum
columns as their members' names, times as SQLAlchemy writes them to SQLite), numbered as Optuna
numbers a trial (the study's trials with a lower id), inside the same transaction. Reading the file back
with Optuna gives the same trial (tests/test_study_mirror.py compares whole files)."""

from __future__ import annotations

import datetime as dt
import json

from optuna.trial import FrozenTrial


def _stamp(t: dt.datetime | None) -> str | None:
    """Optuna's RDB keeps naive UTC (a FrozenTrial holds naive local time), which SQLAlchemy
    writes to SQLite as this text."""
    if t is None:
        return None
    return t.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def insert_trial(rdb, study_id: int, t: FrozenTrial) -> int:
    """Write finished trial `t` into study `study_id` of the SQLite RDB storage `rdb`; its new
    trial id. Statements go to the driver's cursor inside SQLAlchemy's transaction (through
    Core's compiler they cost 1 ms a trial here; so, a fifth of that)."""
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models as m

    if rdb.engine.dialect.name != "sqlite":
        raise ValueError("insert_trial writes a SQLite storage (the run folder's own)")
    tv, iv = m.TrialValueModel, m.TrialIntermediateValueModel
    with rdb.engine.begin() as conn:
        cur = conn.connection.driver_connection.cursor()
        trials = m.TrialModel.__tablename__
        cur.execute(f"INSERT INTO {trials} (number, study_id, state, datetime_start, datetime_complete) "
                    "VALUES (NULL, ?, ?, ?, ?)",
                    (study_id, t.state.name, _stamp(t.datetime_start), _stamp(t.datetime_complete)))
        tid = cur.lastrowid
        cur.execute(f"UPDATE {trials} SET number = (SELECT COUNT(*) FROM {trials} WHERE study_id = ? "
                    "AND trial_id < ?) WHERE trial_id = ?", (study_id, tid, tid))
        rows = [
            (m.TrialParamModel, ("param_name", "param_value", "distribution_json"),
             [(name, t.distributions[name].to_internal_repr(v), distribution_to_json(t.distributions[name]))
              for name, v in t.params.items()]),
            (tv, ("objective", "value", "value_type"),
             [(i, *_named(tv.value_to_stored_repr(v))) for i, v in enumerate(t.values or ())]),
            (m.TrialUserAttributeModel, ("key", "value_json"),
             [(k, json.dumps(v)) for k, v in t.user_attrs.items()]),
            (m.TrialSystemAttributeModel, ("key", "value_json"),
             [(k, json.dumps(v)) for k, v in t.system_attrs.items()]),
            (iv, ("step", "intermediate_value", "intermediate_value_type"),
             [(step, *_named(iv.intermediate_value_to_stored_repr(v))) for step, v in t.intermediate_values.items()]),
        ]
        for model, cols, batch in rows:
            if batch:
                marks = ", ".join("?" * (len(cols) + 1))
                cur.executemany(f"INSERT INTO {model.__tablename__} (trial_id, {', '.join(cols)}) VALUES ({marks})",
                                [(tid, *r) for r in batch])
        cur.close()
    return int(tid)


def _named(stored: tuple) -> tuple:
    """(value, enum type) as SQLAlchemy's Enum column keeps it: the member's name."""
    value, kind = stored
    return value, kind.name
