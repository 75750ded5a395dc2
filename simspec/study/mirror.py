"""The run folder's study, searched in memory and written through to its SQLite file.

Optuna's RDB storage costs a study far more than its simulations once the memo answers most
trials: each trial's dozen small transactions and the history re-read at every suggest took
31 s of a 1000-trial study here, against 6 s for the same sampler in memory. A worker on the
run folder's own SQLite file therefore keeps the study in memory (Optuna's InMemoryStorage:
the sampler reads nothing from disk) and writes each trial to the file when it finishes, in
ONE transaction (simspec.study.trial_rows: INSERTs on the driver's cursor, not the ORM). What a killed run keeps is what it
kept before: every finished trial; a trial still running is lost (before, it was left RUNNING
and marked failed by the next run). Several workers on one file see each other's finished
trials by reading the rows they did not write, at most every PULL_S seconds, and only rows
new since the last read (ids above the highest read) or still pending (TPE proposes from
a history that much staler than with a shared RDB; trials in flight elsewhere are invisible,
as constant_liar's fake values were their only trace before). Enqueued trials (baselines)
stay rows of the file: a worker takes one by marking its row RUNNING there first, so two
workers can never both run it, and writes its outcome into that row.
"""

from __future__ import annotations

import copy
import sqlite3
import threading
import time
from typing import Any, Container, Sequence

from optuna.distributions import BaseDistribution
from optuna.storages import InMemoryStorage
from optuna.trial import FrozenTrial, TrialState

from simspec.study.trial_rows import insert_trial

PULL_S = 1.0


class MirroredStorage(InMemoryStorage):
    """One study of an RDB storage, held in memory; finished trials are written back."""

    def __init__(self, rdb, study_name: str, peers: bool = False) -> None:
        super().__init__()
        self._rdb = rdb
        self._rdb_study = rdb.get_study_id_from_name(study_name)
        self._study = self.create_new_study(rdb.get_study_directions(self._rdb_study), study_name)
        for k, v in rdb.get_study_user_attrs(self._rdb_study).items():
            super().set_study_user_attr(self._study, k, v)
        for k, v in rdb.get_study_system_attrs(self._rdb_study).items():
            super().set_study_system_attr(self._study, k, v)
        self._peers = peers
        self._seen: set[int] = set()        # RDB trial ids already in memory (read or written here)
        self._enqueued: dict[int, int] = {}  # memory trial id -> its RDB row (an enqueued trial)
        self._waiting_rows: dict[int, int] = {}  # those rows, not taken here yet -> memory trial id
        self._pulled_at = -float("inf")
        self._high = -1                     # the highest RDB trial id read so far
        self._elsewhere: set[int] = set()   # rows read RUNNING (an enqueued trial taken elsewhere)
        self._pull()

    # -- reading the file ----------------------------------------------------------------
    def _pull(self) -> None:
        """Bring in the file's rows not yet here: finished trials (a resumed run's, another
        worker's) and enqueued ones. Rows RUNNING elsewhere stay out until they finish."""
        self._pulled_at = time.monotonic()
        pending = set(self._waiting_rows) | self._elsewhere
        # Optuna's own incremental read (what its cached storage uses): rows above the highest
        # id read, plus the pending ones; a finished row is written whole, in one transaction
        for t in self._rdb._get_trials(self._rdb_study, None, pending, self._high):
            self._high = max(self._high, t._trial_id)
            if t._trial_id in self._waiting_rows and t.state.is_finished():
                self._replace(self._waiting_rows.pop(t._trial_id), t)  # another worker ran it
                continue
            if t._trial_id in self._seen or t._trial_id in self._waiting_rows:
                continue
            if not (t.state.is_finished() or t.state == TrialState.WAITING):
                self._elsewhere.add(t._trial_id)  # running elsewhere: read again until it finishes
                continue
            self._elsewhere.discard(t._trial_id)
            self._seen.add(t._trial_id)
            mine = super().create_new_trial(self._study, template_trial=t)
            if t.state == TrialState.WAITING:
                self._enqueued[mine] = t._trial_id
                self._waiting_rows[t._trial_id] = mine

    def refresh(self) -> None:
        """Read the file's new and pending rows now (a run's end: the other workers' last trials)."""
        self._pull()

    def refresh_peers(self) -> None:
        """`refresh` when other workers write to the file (before simulating a scenario this
        worker has not seen: one query, and a duplicate simulation less when a peer has it)."""
        if self._peers:
            self._pull()

    def checkpoint_in_background(self) -> threading.Thread:
        """Fold the file's write-ahead log into it now, in a thread (SQLite runs without the
        GIL), while the report is drawn: else the last connection's close does it as the
        command exits (~4 MB after 1000 trials, 0.3-0.4 s here). Join the thread before exit."""
        def fold() -> None:
            con = sqlite3.connect(self._rdb.engine.url.database, timeout=5)
            try:  # PASSIVE: copies what it can, never waits for a reader or writer
                con.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                con.close()

        th = threading.Thread(target=fold, name="wal-checkpoint", daemon=True)
        th.start()
        return th

    def _replace(self, mine: int, t: FrozenTrial) -> None:
        """An enqueued trial still waiting here that another worker took and finished: its
        outcome replaces the waiting copy (same number here)."""
        self._enqueued.pop(mine, None)
        if self._get_trial(mine).state != TrialState.WAITING:
            return
        done = copy.deepcopy(t)
        done.number, done._trial_id = self._get_trial(mine).number, mine
        with self._lock:
            self._set_trial(mine, done)
            self._update_cache(mine, self._study)

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        if self._peers and time.monotonic() - self._pulled_at >= PULL_S:
            self._pull()
        return super().get_all_trials(study_id, deepcopy=deepcopy, states=states)

    # -- writing it ----------------------------------------------------------------------
    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        super().set_study_user_attr(study_id, key, value)
        self._rdb.set_study_user_attr(self._rdb_study, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        super().set_study_system_attr(study_id, key, value)
        self._rdb.set_study_system_attr(self._rdb_study, key, value)

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        row = self._enqueued.get(trial_id)
        if state == TrialState.RUNNING and row is not None:
            # an enqueued trial: take its row in the file first (another worker may have)
            if not self._rdb.set_trial_state_values(row, TrialState.RUNNING):
                return False  # taken: it waits here until its finished row is read (_pull)
            self._waiting_rows.pop(row, None)
        if not super().set_trial_state_values(trial_id, state, values):
            return False
        if state.is_finished():
            self._write(trial_id, self._get_trial(trial_id), row)
        return True

    def _write(self, trial_id: int, t: FrozenTrial, row: int | None) -> None:
        if row is None:  # one transaction: the row with all its params, attributes and values
            self._seen.add(insert_trial(self._rdb, self._rdb_study, t))
            return
        self._enqueued.pop(trial_id, None)
        rdb = self._rdb
        for name, value in t.params.items():
            dist: BaseDistribution = t.distributions[name]
            rdb.set_trial_param(row, name, dist.to_internal_repr(value), dist)
        for k, v in t.user_attrs.items():
            rdb.set_trial_user_attr(row, k, v)
        for k, v in t.system_attrs.items():
            rdb.set_trial_system_attr(row, k, v)
        for step, v in t.intermediate_values.items():
            rdb.set_trial_intermediate_value(row, step, v)
        rdb.set_trial_state_values(row, t.state, t.values)
