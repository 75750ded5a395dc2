"""Captures of one model on one machine as one profile: per point, the fastest state of all.

The timing protocol's estimate of a point is its fastest run (simspec.timing.estimate), and
passes spread across time see more of a shared host's phases than passes back to back. A
capture stopped by its budget after two or three passes can meet a slow phase at some points
in every pass; a second capture later adds passes, and the merge takes each point's fastest run
over all of them, with that run's split. Torch-free. Refused unless the captures measured the
same thing: the same weights, dtype, device, threads, processor and grid.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import statistics
from pathlib import Path

from simspec.errors import InputError
from simspec.profile.schema import read_profile

SAME = ("sha256", "dtype", "device", "threads", "grid", "weights_bytes", "kv_bytes_per_token")
SAME_MACHINE = ("cpu", "vendor", "arch", "cores", "threads", "isa", "gpu")
KEY = ["kind", "batch", "q", "context", "rows"]


def merge(paths: list[Path], command: str):
    """(DataFrame, sidecar) of the merged profile; InputError naming the file and key that differs."""
    if len(paths) < 2:
        raise InputError(None, "--merge", "give at least two profiles to merge")
    read = [(Path(p), *read_profile(Path(p))) for p in paths]
    first, df0, meta0 = read[0]
    for path, df, meta in read[1:]:
        for key in SAME:
            if meta.get(key) != meta0.get(key):
                raise InputError(str(path), key, f"differs from {first}'s: not a capture of the same thing")
        mine, theirs = meta.get("machine") or {}, meta0.get("machine") or {}
        for key in SAME_MACHINE:
            if mine.get(key) != theirs.get(key):
                raise InputError(str(path), f"machine.{key}", f"{mine.get(key)!r} differs from {first}'s "
                                                              f"{theirs.get(key)!r}: another machine")
        if sorted(map(tuple, df[KEY].to_numpy().tolist())) != sorted(map(tuple, df0[KEY].to_numpy().tolist())):
            raise InputError(str(path), "points", f"its grid points differ from {first}'s")
    rows = {}
    for i, (_, df, _) in enumerate(read):
        for rec in df.to_dict("records"):
            rows.setdefault(tuple(rec[k] for k in KEY), []).append((i, rec))
    out, fastest = [], [0] * len(read)
    for pairs in rows.values():
        src, best = min(pairs, key=lambda p: p[1]["total_s"])
        fastest[src] += 1
        recs = [r for _, r in pairs]
        best = dict(best)
        best["total_median_s"] = statistics.median(r["total_median_s"] for r in recs)
        best["total_max_s"] = max(r["total_max_s"] for r in recs)
        best["repeats"] = sum(int(r["repeats"]) for r in recs)
        out.append(best)
    import pandas as pd

    merged = pd.DataFrame(out, columns=list(df0.columns)).astype(df0.dtypes.to_dict())
    protos = [m.get("protocol") or {} for _, _, m in read]
    meta = dict(meta0)
    meta.update({
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "protocol": {**protos[0], "passes": sum(int(p.get("passes", 0)) for p in protos), "stop": "merged",
                     "seconds": round(sum(float(p.get("seconds", 0.0)) for p in protos), 1)},
        "merged": [{"path": str(p), "sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "date": m.get("date"),
                    "command": m.get("command"), "protocol": m.get("protocol"), "fastest_points": n}
                   for (p, _, m), n in zip(read, fastest)],
    })
    return merged, meta
