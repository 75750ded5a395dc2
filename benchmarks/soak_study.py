"""Soak: a 1,000-trial study on a small, fast scenario; memory growth and time per trial.

Run: .venv/bin/python benchmarks/soak_study.py [--trials 1000] [--storage URL] [--json out.json]
     (1,000 trials take several minutes on the 2-core CPU machine: run it alone)
The real trial path is run in this process (simspec.study.runner's objective, TPE sampler,
SQLite storage in a temporary run folder unless --storage is given), one worker. After every
trial it records the resident set size (VmRSS from /proc/self/status: no psutil) and the
trial's wall time. Printed: RSS after the first trials and at the end, its growth in MB, and
the least-squares slope of time per trial against the trial index (ms per 1,000 trials): a
leak shows as RSS growth, a storage or sampler cost growing with the history as a slope
(TPE refits on every completed trial, so some slope is expected; compare runs, not zero).
A measurement, not a test: nothing here fails a build.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

STUDY = """
name = "soak"
seed = 0
trials = {trials}
baselines = [{{ gamma = 0, max_batch = 4 }}]

[scenario.target]
cost = {{ step_ms = 20.0, per_seq_ms = 0.5, per_token_ms = 0.05 }}
layers = 24
[scenario.placement]
devices = {{ dev0 = {{ price_per_hour = 1.0 }} }}
target = "dev0"
[scenario.serving]
seed = 0

[workload]
requests = 16
arrival = "closed"
concurrency = 4
prompt_len = {{ dist = "uniform", min = 16, max = 128 }}
output_len = {{ dist = "uniform", min = 8, max = 48 }}

[search]
gamma = {{ low = 0, high = 6 }}
drafter = ["model", "early_exit", "ngram"]
exit_layer = {{ low = 4, high = 20, step = 4 }}
vocab = [4096, 32768, 131072]
max_batch = [1, 2, 4, 8]

[drafters.model]
name = "org/draft-0.1b"
cost = {{ step_ms = 4.0, per_seq_ms = 0.1 }}
acceptance = {{ per_position = [0.8, 0.7, 0.65] }}
vocab_size = 131072
head_ms = 1.5
coverage = [[4096, 0.85], [32768, 0.96], [131072, 1.0]]

[drafters.early_exit]
acceptance_by_layer = [[4, 0.1], [12, 0.4], [20, 0.75]]

[drafters.ngram]
acceptance = {{ iid = 0.3 }}

[objectives]
throughput = "maximize"

[constraints]
tpot_p99_s = {{ max = 0.05 }}
"""


def rss_mb() -> float:
    """This process's resident set size in MB, from /proc/self/status (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS line in /proc/self/status")


def slope(ys: list[float]) -> float:
    """Least-squares slope of ys against their index (units of y per trial)."""
    n = len(ys)
    if n < 2:
        return 0.0
    mx = (n - 1) / 2
    my = sum(ys) / n
    sxx = sum((i - mx) ** 2 for i in range(n))
    return sum((i - mx) * (y - my) for i, y in enumerate(ys)) / sxx


def soak(trials: int, storage: str | None, folder: Path) -> dict:
    from simspec.study import runner
    from simspec.study.evaluate import Evaluator
    from simspec.study.spec import load_study
    from simspec.study.storage import default_url

    p = folder / "soak.toml"
    p.write_text(STUDY.format(trials=trials))
    spec = load_study(p)
    url = storage or default_url(folder)
    study, _ = runner.prepare(spec, url, False, own_storage=storage is None)
    study = runner.open_study(spec, url, False, spec.file.seed, 1, heartbeat=storage is not None)
    objective = runner.study_objective(spec, Evaluator(spec))
    times: list[float] = []
    rss: list[float] = []
    last = [time.perf_counter()]

    def record(st, trial) -> None:
        now = time.perf_counter()
        times.append(now - last[0])
        rss.append(rss_mb())
        last[0] = now
        if len(times) % 100 == 0:
            print(f"  {len(times)} trials, {rss[-1]:.1f} MB, last 100: {sum(times[-100:]) / 100 * 1e3:.1f} ms/trial",
                  flush=True)

    rss0 = rss_mb()
    last[0] = time.perf_counter()
    study.optimize(objective, n_trials=trials, callbacks=[record], gc_after_trial=False)
    warm = min(10, len(rss) - 1)
    return {
        "trials": len(times), "rss_start_mb": rss0, "rss_after_warmup_mb": rss[warm], "rss_end_mb": rss[-1],
        "rss_growth_mb": rss[-1] - rss[warm], "rss_max_mb": max(rss),
        "mean_ms_per_trial": sum(times) / len(times) * 1e3,
        "first_100_ms_per_trial": sum(times[:100]) / len(times[:100]) * 1e3,
        "last_100_ms_per_trial": sum(times[-100:]) / len(times[-100:]) * 1e3,
        "slope_ms_per_trial_per_1000_trials": slope(times) * 1e3 * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--storage", default=None, help="Optuna storage URL (default: SQLite in a temporary folder)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    from simspec.study.runner import quiet

    quiet()
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        res = soak(args.trials, args.storage, Path(d))
        res["wall_s"] = time.perf_counter() - t0
    print(f"{res['trials']} trials in {res['wall_s']:.1f} s ({res['mean_ms_per_trial']:.1f} ms/trial; "
          f"first 100 {res['first_100_ms_per_trial']:.1f}, last 100 {res['last_100_ms_per_trial']:.1f})")
    print(f"RSS {res['rss_after_warmup_mb']:.1f} MB after {min(10, res['trials'] - 1) + 1} trials -> "
          f"{res['rss_end_mb']:.1f} MB at the end: growth {res['rss_growth_mb']:+.1f} MB (max {res['rss_max_mb']:.1f})")
    print(f"time per trial vs trial index: slope {res['slope_ms_per_trial_per_1000_trials']:+.2f} ms per 1,000 trials "
          "(least squares)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
