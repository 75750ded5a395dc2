"""The run folder's study searched in memory and written through (simspec.study.mirror): the
file ends up with exactly the trials a direct RDB run writes, for the same seed; enqueued rows
are taken once; workers see each other's finished rows; a resumed run reads the file."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from simspec.study import mirror
from simspec.study.mirror import MirroredStorage
from simspec.study.storage import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def objective(trial):
    g = trial.suggest_int("gamma", 0, 8)
    kind = trial.suggest_categorical("drafter", ["model", "early_exit"])
    if kind == "early_exit":
        trial.suggest_int("exit_layer", 4, 26)
    trial.set_user_attr("summary", {"g": g, "kind": kind})
    trial.set_constraint("slo", float(g - 6))
    if g == 3:
        raise optuna.TrialPruned("three")
    return g * 1.5 + (2.0 if kind == "model" else 0.0)


def make(tmp_path, name):
    url = f"sqlite:///{tmp_path / (name + '.db')}"
    rdb = open_storage(url)
    optuna.create_study(study_name="s", storage=rdb, direction="maximize").enqueue_trial({"gamma": 0, "drafter": "model"})
    return rdb


def rows(rdb):
    sid = rdb.get_study_id_from_name("s")
    return [(t.number, t.state, t.params, t.values, t.user_attrs, t.intermediate_values)
            for t in rdb.get_all_trials(sid)]


def run(storage, n, seed=0):
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=5)
    optuna.load_study(study_name="s", storage=storage, sampler=sampler).optimize(objective, n_trials=n)


def test_same_file_as_a_direct_rdb_run(tmp_path):
    direct = make(tmp_path, "direct")
    run(direct, 25)
    rdb = make(tmp_path, "mirrored")
    run(MirroredStorage(rdb, "s"), 25)
    a, b = rows(direct), rows(rdb)
    assert len(a) == 25 and a == b  # same trials, params, states, values, attributes, order
    assert any(s == TrialState.PRUNED for _, s, *_ in b)
    assert b[0][1] == TrialState.COMPLETE and b[0][2] == {"gamma": 0, "drafter": "model"}  # the enqueued row


def test_resume_reads_the_file_and_continues_like_the_rdb(tmp_path):
    direct = make(tmp_path, "direct")
    run(direct, 10)
    run(direct, 10, seed=1)
    rdb = make(tmp_path, "mirrored")
    run(MirroredStorage(rdb, "s"), 10)
    run(MirroredStorage(rdb, "s"), 10, seed=1)  # a second run: loads the 10, writes only its own
    assert rows(direct) == rows(rdb)


def test_an_enqueued_row_is_taken_once(tmp_path):
    rdb = make(tmp_path, "m")
    a, b = MirroredStorage(rdb, "s", peers=True), MirroredStorage(rdb, "s", peers=True)
    sa = optuna.load_study(study_name="s", storage=a)
    sb = optuna.load_study(study_name="s", storage=b)
    ta = sa.ask()  # takes the enqueued row
    tb = sb.ask()  # finds it taken: a fresh trial
    assert a.get_trial(ta._trial_id).system_attrs.get("fixed_params") == {"gamma": 0, "drafter": "model"}
    assert "fixed_params" not in b.get_trial(tb._trial_id).system_attrs
    objective(ta)
    sa.tell(ta, 1.0)
    tb.suggest_int("gamma", 0, 8)
    tb.suggest_categorical("drafter", ["model", "early_exit"])
    sb.tell(tb, 2.0)
    # b's waiting copy of the row is replaced by a's outcome once b reads the file
    mirror.PULL_S, before = 0.0, mirror.PULL_S
    try:
        done = sb.get_trials(states=(TrialState.COMPLETE,))
    finally:
        mirror.PULL_S = before
    assert len(done) == 2 and done[0].params == {"gamma": 0, "drafter": "model"} and done[0].values == [1.0]
    file = rdb.get_all_trials(rdb.get_study_id_from_name("s"))
    assert [t.values for t in file] == [[1.0], [2.0]] and file[0].params == {"gamma": 0, "drafter": "model"}


def test_peers_see_each_others_finished_trials(tmp_path, monkeypatch):
    monkeypatch.setattr(mirror, "PULL_S", 0.0)
    rdb = make(tmp_path, "m")
    a, b = MirroredStorage(rdb, "s", peers=True), MirroredStorage(rdb, "s", peers=True)
    run(a, 4)
    sb = optuna.load_study(study_name="s", storage=b)
    assert len(sb.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 4
    run(b, 3, seed=1)
    assert len(rows(rdb)) == 7
    assert len(optuna.load_study(study_name="s", storage=a).get_trials()) == 7


@pytest.mark.parametrize("peers", [False, True])
def test_study_attributes_reach_the_file(tmp_path, peers):
    rdb = make(tmp_path, "m")
    st = optuna.load_study(study_name="s", storage=MirroredStorage(rdb, "s", peers=peers))
    st.set_user_attr("definition", {"x": 1})
    assert rdb.get_study_user_attrs(rdb.get_study_id_from_name("s"))["definition"] == {"x": 1}


def test_a_trial_written_by_core_inserts_reads_back_whole(tmp_path):
    """trial_rows.insert_trial writes what Optuna's ORM would read back: every field, with
    infinite and NaN values, several objectives and a number that follows the file's rows."""
    import datetime as dt
    import math

    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.trial import create_trial

    from simspec.study.trial_rows import insert_trial

    rdb = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    sid = rdb.get_study_id_from_name(optuna.create_study(study_name="s", storage=rdb,
                                                         directions=["maximize", "minimize"]).study_name)
    t = create_trial(
        state=TrialState.COMPLETE, values=[1.5, float("inf")],
        params={"gamma": 3, "drafter": "ngram", "vocab": 4096.5},
        distributions={"gamma": IntDistribution(0, 8), "drafter": CategoricalDistribution(["model", "ngram"]),
                       "vocab": FloatDistribution(1.0, 1e6, log=True)},
        user_attrs={"summary": {"x": [1, 2], "k": "v"}, "invalid": None},
        system_attrs={"constraints": [0.5, -1.0]},
        intermediate_values={0: 0.25, 1: float("nan"), 2: float("-inf")},
    )
    t.datetime_start = dt.datetime(2026, 12, 6, 12, 0, 0, 123456)
    t.datetime_complete = dt.datetime(2026, 12, 6, 12, 0, 1, 654321)
    first, second = insert_trial(rdb, sid, t), insert_trial(rdb, sid, t)
    got = rdb.get_all_trials(sid)
    assert [g._trial_id for g in got] == [first, second] and [g.number for g in got] == [0, 1]
    g = got[1]
    assert (g.state, g.values, g.params, g.distributions, g.user_attrs, g.system_attrs) == \
        (t.state, t.values, t.params, t.distributions, t.user_attrs, t.system_attrs)
    assert (g.datetime_start, g.datetime_complete) == (t.datetime_start, t.datetime_complete)
    iv = g.intermediate_values
    assert iv[0] == 0.25 and math.isnan(iv[1]) and iv[2] == float("-inf")


def test_a_row_running_elsewhere_is_read_once_it_finishes(tmp_path, monkeypatch):
    """The incremental read keeps an enqueued row another worker took (RUNNING in the file when
    first read) pending, and brings it in when it finishes, though newer rows were read since."""
    monkeypatch.setattr(mirror, "PULL_S", 0.0)
    rdb = make(tmp_path, "m")
    a = MirroredStorage(rdb, "s", peers=True)
    sa = optuna.load_study(study_name="s", storage=a)
    ta = sa.ask()  # takes the enqueued row: RUNNING in the file
    b = MirroredStorage(rdb, "s", peers=True)  # reads it RUNNING
    run(b, 2, seed=1)  # newer rows, read back by b
    objective(ta)
    sa.tell(ta, 1.0)
    done = optuna.load_study(study_name="s", storage=b).get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(done) == 3 and any(t.params == {"gamma": 0, "drafter": "model"} for t in done)


def test_the_write_ahead_log_is_folded_into_the_file_in_a_thread(tmp_path):
    """checkpoint_in_background copies the trials written so far from study.db-wal into study.db
    (else the command's exit does it)."""
    rdb = make(tmp_path, "m")
    st = MirroredStorage(rdb, "s")
    run(st, 6)
    db = tmp_path / "m.db"
    before = db.read_bytes()
    assert (tmp_path / "m.db-wal").stat().st_size > 0  # the trials are in the log, not yet in the file
    th = st.checkpoint_in_background()
    th.join(30)
    assert not th.is_alive() and db.read_bytes() != before  # their pages were copied into the file
    import sqlite3

    con = sqlite3.connect(db)
    try:  # nothing left to copy
        busy, frames, copied = con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        con.close()
    assert busy == 0 and frames == copied
