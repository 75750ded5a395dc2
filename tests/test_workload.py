"""Workload generation: distributions, arrivals, datasets, determinism."""

import numpy as np
import pytest

from simspec.config.workload import WorkloadSpec
from simspec.sim.workload import build_workload


def spec(**kw) -> WorkloadSpec:
    base = {"requests": 2000, "prompt_len": 10, "output_len": 20}
    base.update(kw)
    return WorkloadSpec.model_validate(base)


def test_fixed_lengths():
    wl = build_workload(spec(), 0)
    assert (wl.prompt_len == 10).all() and (wl.output_len == 20).all()
    assert wl.mode == "closed" and wl.concurrency == 1


def test_uniform_bounds_and_lognormal_median():
    wl = build_workload(spec(prompt_len={"dist": "uniform", "min": 5, "max": 9},
                             output_len={"dist": "lognormal", "median": 100, "sigma": 0.5, "min": 1, "max": 10_000}), 1)
    assert wl.prompt_len.min() == 5 and wl.prompt_len.max() == 9
    assert np.median(wl.output_len) == pytest.approx(100, rel=0.05)


def test_poisson_rate():
    wl = build_workload(spec(arrival="poisson", rate=4.0, requests=20_000), 2)
    gaps = np.diff(wl.arrival)
    assert (gaps >= 0).all()
    assert gaps.mean() == pytest.approx(0.25, rel=0.03)


def test_same_seed_same_workload():
    a, b, c = (build_workload(spec(arrival="poisson", rate=1.0, output_len={"dist": "uniform", "min": 1, "max": 99}), s)
               for s in (7, 7, 8))
    assert np.array_equal(a.arrival, b.arrival) and np.array_equal(a.output_len, b.output_len)
    assert not np.array_equal(a.output_len, c.output_len)


def test_max_output_len_caps():
    wl = build_workload(spec(output_len=500, max_output_len=128), 0)
    assert (wl.output_len == 128).all()


@pytest.mark.parametrize("name", ["humaneval", "sharegpt"])
def test_dataset_lengths(name):
    wl = build_workload(spec(dataset=name, prompt_len=None, output_len=None, requests=500), 0)
    assert (wl.prompt_len > 0).all() and (wl.output_len > 0).all()
    assert len(np.unique(wl.output_len)) > 20  # real, varied lengths
    again = build_workload(spec(dataset=name, prompt_len=None, output_len=None, requests=500), 0)
    assert np.array_equal(wl.prompt_len, again.prompt_len)
    if name == "sharegpt":  # vLLM's serving-benchmark filter
        assert wl.prompt_len.max() <= 1024 and (wl.prompt_len + wl.output_len).max() <= 2048


def test_dataset_with_fixed_output_override():
    wl = build_workload(spec(dataset="humaneval", prompt_len=None, output_len=64, requests=50), 0)
    assert (wl.output_len == 64).all() and len(np.unique(wl.prompt_len)) > 5


def test_explicit_arrival_times_are_kept_and_simulated():
    """arrival = "explicit": request i arrives at arrival_times[i] (what `simspec validate` gives
    the simulator to replay a live run's arrivals); the simulator admits none earlier."""
    from simspec.config import parse_scenario
    from simspec.errors import InputError
    from simspec.sim.run import simulate

    times = [0.0, 0.25, 0.25, 3.0]
    wl = build_workload(spec(requests=4, arrival="explicit", arrival_times=times), 9)
    assert wl.arrival.tolist() == times and wl.mode == "explicit" and wl.concurrency == 4
    base = {"target": {"cost": {"step_ms": 10.0}}, "serving": {"max_batch": 2}}
    sc = parse_scenario({**base, "workload": {"requests": 4, "prompt_len": 8, "output_len": 5,
                                              "arrival": "explicit", "arrival_times": times}})
    rec = simulate(sc).records
    assert rec.arrival.tolist() == times and (rec.admitted >= rec.arrival).all()
    assert rec.admitted[3] == 3.0  # the machine is idle by then: served on arrival
    for bad, reason in (({"arrival_times": times}, "only applies to arrival = 'explicit'"),
                        ({"arrival": "explicit"}, "needs `arrival_times`"),
                        ({"arrival": "explicit", "arrival_times": times[:3]}, "3 times for 4 requests"),
                        ({"arrival": "explicit", "arrival_times": [0.0, 2.0, 1.0, 3.0]}, "non-decreasing"),
                        ({"arrival": "explicit", "arrival_times": [0.0, 1.0, float("nan"), 3.0]}, "finite")):
        with pytest.raises(InputError, match=reason) as err:
            parse_scenario({**base, "workload": {"requests": 4, "prompt_len": 8, "output_len": 5, **bad}}, "s.toml")
        assert "s.toml" in str(err.value) and "\n" not in str(err.value)
