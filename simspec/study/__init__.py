"""`simspec study`: search speculative-decoding settings with Optuna over the simulator.

spec.py (study files) -> space.py (knobs -> scenario) -> evaluate.py (simulate) ->
objectives.py (values, SLO constraints) -> runner.py (TPE, workers, storage.py, resume) ->
results.py / schedule.py (per-batch answer) / capacity.py / export.py / plots.py / report.py.
Torch-free, like the simulator.
"""
