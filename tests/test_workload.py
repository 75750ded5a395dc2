"""Workload generation: distributions, arrivals, datasets, determinism."""

import numpy as np
import pytest

from simspec.config import WorkloadSpec
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
