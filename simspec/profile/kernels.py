"""`--kernels`: a per-operator breakdown of a few representative forwards (torch.profiler)."""

from __future__ import annotations

from simspec.models.loader import LoadedModel
from simspec.profile.workloads import FilledCache, decode_fn, prefill_fn


def kernel_table(lm: LoadedModel):
    """One row per (point, operator): calls and total/self time, sorted by self time."""
    import pandas as pd
    import torch
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU]
    if lm.device.startswith("cuda"):
        acts.append(ProfilerActivity.CUDA)
    model = lm.model
    rows = []
    cases = {}
    for b, q, ctx in ((1, 1, 512), (1, 16, 512), (8, 1, 2048)):
        cache = FilledCache(model, b, ctx)
        cases[f"decode b={b} q={q} ctx={ctx}"] = (decode_fn(model, cache, b, q), cache.reset)
    cases["prefill b=1 len=256"] = (prefill_fn(model, 1, 256), None)
    for label, (fn, reset) in cases.items():
        for _ in range(2):  # warm-up
            if reset:
                reset()
            fn()
        if reset:
            reset()
        with profile(activities=acts) as prof:
            fn()
        for ev in prof.key_averages():
            rows.append({
                "point": label, "op": ev.key, "calls": ev.count,
                "cpu_total_s": ev.cpu_time_total / 1e6, "cpu_self_s": ev.self_cpu_time_total / 1e6,
                "device_total_s": getattr(ev, "device_time_total", 0.0) / 1e6,
            })
    df = pd.DataFrame(rows)
    return df.sort_values(["point", "cpu_self_s"], ascending=[True, False]).reset_index(drop=True)
