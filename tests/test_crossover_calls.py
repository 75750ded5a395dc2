"""compare.crossover_calls: where the best speculative config stops beating plain decoding,
predicted and measured, on hand-made tables."""

from __future__ import annotations

import pandas as pd

from simspec.validation.compare import crossover_calls


def table(pred: dict, meas: dict | None = None) -> pd.DataFrame:
    """pred / meas: {(draft, max_batch): tok/s}; one closed-loop row each, plus a Poisson row
    that must be ignored."""
    rows = []
    for (draft, b), p in pred.items():
        r = {"config": f"{draft} b{b}", "draft": draft, "max_batch": b, "arrival": "closed", "predicted_tok_s": p}
        if meas is not None:
            r["measured_tok_s"] = meas[(draft, b)]
        rows.append(r)
    rows.append({"config": "poisson", "draft": "ngram", "max_batch": 8, "arrival": "poisson",
                 "predicted_tok_s": 1e9, "measured_tok_s": 1e9 if meas is not None else None})
    return pd.DataFrame(rows)


PRED = {("none", 1): 10, ("ngram", 1): 15, ("exit", 1): 9,
        ("none", 4): 30, ("ngram", 4): 33, ("exit", 4): 20,
        ("none", 16): 80, ("ngram", 16): 70, ("exit", 16): 50}


def test_stops_where_the_best_speculative_config_no_longer_wins():
    meas = dict(PRED)
    meas[("ngram", 4)] = 29  # measured: stops one step earlier
    c = crossover_calls(table(PRED, meas))
    assert [r["max_batch"] for r in c["batches"]] == [1, 4, 16]
    assert c["batches"][0]["predicted_speedup"] == 1.5 and c["batches"][0]["predicted_best"] == "ngram b1"
    assert c["predicted_stops_at"] == 16 and c["measured_stops_at"] == 4
    assert c["within_one_step"] is True


def test_two_steps_apart_and_never():
    meas = dict(PRED)
    meas[("ngram", 1)] = 9  # measured: never pays; predicted: stops at 16
    meas[("ngram", 4)] = 29
    c = crossover_calls(table(PRED, meas))
    assert c["measured_stops_at"] == 1 and c["within_one_step"] is False
    pays = dict(PRED)
    pays[("ngram", 16)] = 81
    c = crossover_calls(table(pays, pays))
    assert c["predicted_stops_at"] is None and c["measured_stops_at"] is None and c["within_one_step"] is True


def test_predicted_only_and_nothing_to_compare():
    c = crossover_calls(table(PRED))
    assert c["predicted_stops_at"] == 16 and "measured_stops_at" not in c
    only_plain = table({("none", 1): 10, ("none", 4): 30})
    assert crossover_calls(only_plain) is None
