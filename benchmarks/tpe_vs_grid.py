"""TPE against the exhaustive grid on a conditional space of >= 500 points.

Run: .venv/bin/python benchmarks/tpe_vs_grid.py [--seeds 0 1 2 3 4] [--budget 0.2]
Issue 6's bar: TPE's best within 1% of the grid optimum using <= 20% of the evaluations.
Both sides evaluate the same deterministic function (same scenario + seed -> same numbers);
every TPE trial counts as an evaluation, repeats included.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

STUDY = """
name = "grid"
seed = {seed}
startup_trials = 10
baselines = [{{ gamma = 0, max_batch = 8 }}]

[scenario.target]
cost = {{ step_ms = 20.0, per_seq_ms = 0.6, per_token_ms = 0.08 }}
layers = 24
[scenario.serving]
seed = 0

[workload]
requests = 64
arrival = "closed"
concurrency = 32
prompt_len = {{ dist = "uniform", min = 16, max = 256 }}
output_len = {{ dist = "uniform", min = 32, max = 160 }}

[search]
gamma = {{ low = 0, high = 8 }}
drafter = ["model", "early_exit", "ngram"]
exit_layer = {{ low = 4, high = 22, step = 2 }}
vocab = [4096, 16384, 65536, 131072]
max_batch = [1, 2, 4, 8, 16, 32]

[drafters.model]
cost = {{ step_ms = 4.0, per_seq_ms = 0.1 }}
acceptance = {{ per_position = [0.8, 0.7, 0.65] }}
vocab_size = 131072
head_ms = 1.8
coverage = [[4096, 0.86], [16384, 0.94], [65536, 0.99], [131072, 1.0]]

[drafters.early_exit]
acceptance_by_layer = [[4, 0.1], [12, 0.45], [22, 0.85]]

[drafters.ngram]
acceptance = {{ iid = 0.3 }}

[objectives]
throughput = "maximize"

[constraints]
tpot_p99_s = {{ max = 0.03 }}
"""


def load(seed: int, d: Path):
    from simspec.study.spec import load_study

    p = d / f"grid{seed}.toml"
    p.write_text(STUDY.format(seed=seed))
    return load_study(p)


def grid_optimum(spec):
    from simspec.study import objectives, space
    from simspec.study.evaluate import Evaluator

    ev = Evaluator(spec)
    pts = space.grid(spec)
    best, arg = float("-inf"), None
    for p in pts:
        s = ev.evaluate(p)
        if objectives.feasible(spec, s) and s["throughput_tok_s"] > best:
            best, arg = s["throughput_tok_s"], p
    return len(pts), best, arg


def tpe_best(spec, n_trials: int, random: bool = False):
    import optuna

    from simspec.study import results, runner, space
    from simspec.study.evaluate import Evaluator

    runner.quiet()
    sampler = optuna.samplers.RandomSampler(seed=spec.file.seed) if random else runner.make_sampler(spec, spec.file.seed, 1)
    st = optuna.create_study(direction="maximize", sampler=sampler)
    for b in spec.file.baselines:
        st.enqueue_trial(space.to_optuna_params(b))
    st.optimize(runner.study_objective(spec, Evaluator(spec)), n_trials=n_trials)
    t = results.best_trial(st)
    return t.values[0], results.knobs(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--budget", type=float, default=0.2, help="TPE evaluations as a fraction of the grid")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        spec = load(args.seeds[0], Path(d))
        t0 = time.perf_counter()
        n, opt, arg = grid_optimum(spec)
        print(f"grid: {n} points, optimum {opt:.2f} tok/s at {arg} ({time.perf_counter() - t0:.1f} s)")
        budget = int(args.budget * n)
        gaps = []
        for seed in args.seeds:
            t0 = time.perf_counter()
            val, knobs = tpe_best(load(seed, Path(d)), budget)
            gap = (opt - val) / opt
            gaps.append(gap)
            print(f"TPE seed {seed}: {budget} evals ({budget / n:.0%}), best {val:.2f} tok/s "
                  f"({gap:+.2%} below the optimum) at {knobs} ({time.perf_counter() - t0:.1f} s)")
        ok = sum(g <= 0.01 for g in gaps)
        print(f"TPE within 1% of the grid optimum: {ok}/{len(gaps)} seeds; worst gap {max(gaps):.2%}")
        rgaps = [(opt - tpe_best(load(seed, Path(d)), budget, random=True)[0]) / opt for seed in args.seeds]
        print(f"random sampling, same budget: within 1% on {sum(g <= 0.01 for g in rgaps)}/{len(rgaps)} seeds; "
              f"gaps {', '.join(f'{g:.2%}' for g in rgaps)}")


if __name__ == "__main__":
    main()
