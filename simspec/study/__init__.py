"""`simspec study`: search speculative-decoding settings with Optuna over the simulator.

spec.py (study files) -> space.py (knobs) -> trial.py (knob values -> Scenario) -> evaluate.py (simulate) ->
objectives.py (values, SLO constraints) -> runner.py (TPE, workers, storage.py, resume) ->
results.py / schedule.py (per-batch answer) / capacity.py / export.py -> outcome.py (the
result files; figures, summary.md and report.html are simspec.report's). Torch-free, like the simulator.
"""
