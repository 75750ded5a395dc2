"""The two-process drafter/target pipeline is lossless and cleans up after itself.

Tiny random models (no weights to download): a 4-layer target with a 2-layer drafter of other
random weights (partial acceptance: the reject and rollback paths) and with an exact copy of
itself (every draft accepted: the catch-up path, and in overlapped mode the pre-drafted rounds
that survive). Each mode must reproduce plain greedy decoding token for token.
"""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")

from simspec.live.engine import plain_greedy  # noqa: E402
from simspec.live.pipeline import Pipeline, PipelineConfig, WorkerError  # noqa: E402
from simspec.models import load_model  # noqa: E402

pytestmark = pytest.mark.slow

PROMPTS = [list(range(10, 30)), [40, 41, 42, 43, 44], [1, 2, 3, 1, 2, 3, 1, 2]]
NEW = 24
TARGET = "tiny:llama:4"


@pytest.fixture(scope="module")
def reference():
    m = load_model(TARGET).model
    return [plain_greedy(m, p, NEW) for p in PROMPTS]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("draft", ["tiny:llama:2", TARGET], ids=["other", "copy"])
def test_pipeline_equals_plain_greedy(reference, draft):
    """Both modes and three gammas through one pair of workers (spawning them is most of the
    cost); the other drafter on pinned cores, the copy unpinned."""
    pinned = draft != TARGET
    cfg = PipelineConfig(TARGET, draft, gamma=3, dtype="fp32", target_core=0 if pinned else None,
                         draft_core=(1 if os.cpu_count() > 1 else 0) if pinned else None)
    with Pipeline(cfg) as pipe:
        pids = pipe.pids
        for overlap in (False, True):
            for gamma in (1, 3, 5):
                runs = [pipe.generate(p, NEW, gamma=gamma, overlap=overlap) for p in PROMPTS]
                assert [r.tokens for r in runs] == reference, f"gamma={gamma} overlap={overlap}"
                if draft == TARGET:  # an exact copy: every draft accepted
                    assert all(r.accepted == r.rounds * gamma for r in runs)
                    if overlap and gamma > 1:
                        assert sum(r.ready_rounds for r in runs) > 0
                    if not overlap:
                        assert sum(r.ready_rounds for r in runs) == 0
                elif gamma > 1:  # the other drafter rejects some drafts: the rollback paths ran
                    assert sum(r.accepted for r in runs) < sum(r.rounds for r in runs) * gamma
        if draft == TARGET:  # a stop token ends decoding, in both modes
            stop = reference[0][5]
            for overlap in (False, True):
                run = pipe.generate(PROMPTS[0], NEW, frozenset({stop}), overlap=overlap)
                assert run.tokens == reference[0][:reference[0].index(stop) + 1]
    assert not any(_alive(p) for p in pids)


def test_worker_error_stops_both_processes():
    cfg = PipelineConfig(TARGET, "tiny:nosucharch", gamma=2, dtype="fp32", target_core=None, draft_core=None)
    with pytest.raises(WorkerError, match="tiny models are"):
        Pipeline(cfg)
    import multiprocessing as mp

    for child in mp.active_children():
        child.join(timeout=10)
    assert not [c for c in mp.active_children() if c.is_alive()]
