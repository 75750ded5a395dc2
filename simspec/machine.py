"""Which machine is this: the identity every profile, trace and validation records, and the
verdict that says whether a profile captured on one machine prices another.

A profile from an Intel Xeon with AMX predicted an AMD EPYC 30% off, silently: bf16 GEMMs run
on different units (AMX tiles vs AVX-512 BF16), with other cache sizes and memory bandwidth.
So identity is the processor model, its vendor, the cores used, the ISA features that change
which kernels run, the cache sizes and a quick memory-bandwidth probe; for a GPU its name,
SM count, memory, driver and CUDA version. Torch-free (reads /proc and /sys; a GPU is asked
through torch only when torch is already imported, else through nvidia-smi).
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# ISA features that decide which CPU kernels run (oneDNN / torch's CPU capability).
KERNEL_FLAGS = ("amx_bf16", "amx_tile", "amx_int8", "avx512_bf16", "avx512_vnni", "avx512f", "avx_vnni",
                "avx2", "fma")


def _cpuinfo() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if ":" in line:
                k, v = (x.strip() for x in line.split(":", 1))
                out.setdefault(k, v)
    except OSError:
        pass
    return out


def _caches() -> dict[str, str]:
    """{'L1d': '48K', 'L2': '1024K', 'L3': '32768K', ...} of cpu0 (sysfs), empty if unknown."""
    out: dict[str, str] = {}
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for d in sorted(base.glob("index*")):
        try:
            level = (d / "level").read_text().strip()
            kind = (d / "type").read_text().strip()
            size = (d / "size").read_text().strip()
        except OSError:
            continue
        name = f"L{level}" + {"Data": "d", "Instruction": "i"}.get(kind, "")
        out[name] = size
    return out


def memory_bandwidth_gb_s(mb: int = 256, repeats: int = 3) -> float:
    """Copy bandwidth of one thread over a buffer far larger than the caches (best of a few)."""
    import numpy as np

    a = np.ones(mb * 1024 * 1024 // 8)
    b = np.empty_like(a)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t0)
    return round(2 * a.nbytes / best / 1e9, 1)  # read + write


def _gpu(device: str) -> dict:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        idx = torch.device(device).index or 0
        p = torch.cuda.get_device_properties(idx)
        return {"name": p.name, "sms": p.multi_processor_count, "memory_gb": round(p.total_memory / 1e9, 1),
                "cuda": torch.version.cuda, "capability": f"{p.major}.{p.minor}",
                "driver": _nvidia_smi("driver_version")}
    name = _nvidia_smi("name")
    return {"name": name, "driver": _nvidia_smi("driver_version")} if name else {}


def _nvidia_smi(field: str) -> str:
    try:
        r = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return r.stdout.strip().splitlines()[0] if r.returncode == 0 and r.stdout.strip() else ""


def identify(device: str = "cpu", threads: int | None = None, probe: bool = True) -> dict:
    """This machine's identity as a JSON-ready dict (see the module docstring)."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    ident = {
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        "vendor": info.get("vendor_id", ""),
        "arch": platform.machine(),
        "cores": os.cpu_count() or 0,
        "threads": threads,
        "isa": [f for f in KERNEL_FLAGS if f in flags],
        "caches": _caches(),
    }
    if probe:
        ident["memory_gb_s"] = memory_bandwidth_gb_s()
    if device.startswith("cuda"):
        ident["gpu"] = _gpu(device)
    return ident


def from_sidecar(meta: dict) -> dict:
    """The identity a sidecar records; older sidecars only named the processor (device_name),
    and their GEMM row block of 16 meant AMX."""
    if isinstance(meta.get("machine"), dict):
        return meta["machine"]
    name = str(meta.get("device_name") or "unknown")
    ident: dict = {"cpu": name, "vendor": _vendor(name), "legacy": True}
    if meta.get("device", "cpu").startswith("cuda"):
        ident = {"cpu": "", "vendor": "", "gpu": {"name": name}, "legacy": True}
    elif int(meta.get("token_block", 1)) == 16:
        ident["amx"] = True  # only a hint: the full ISA list was not recorded
    return ident


def _vendor(name: str) -> str:
    low = name.lower()
    return "GenuineIntel" if "intel" in low else "AuthenticAMD" if "amd" in low else ""


def slug(ident: dict) -> str:
    """A folder name for profiles of this machine: 'amd-epyc', 'intel-xeon', 'nvidia-h200'."""
    name = (ident.get("gpu") or {}).get("name") or ident.get("cpu") or "unknown"
    name = re.sub(r"\(r\)|\(tm\)|processor|cpu|@.*$|\d+-core", " ", name.lower())
    words = [w for w in re.split(r"[^a-z0-9]+", name) if w][:3]
    return "-".join(words) or "unknown"


def label(ident: dict) -> str:
    """One readable phrase naming a machine, for messages."""
    gpu = (ident.get("gpu") or {}).get("name")
    if gpu:
        return gpu
    isa = ident.get("isa")
    feats = f" ({', '.join(isa)})" if isa else ""
    return f"{ident.get('cpu') or 'unknown CPU'}{feats}"


def matches_title(ident: dict, title: str) -> bool:
    """Whether a device's description (a catalog title) names the hardware of `ident`: every
    word of its slug (vendor, family) appears in the title."""
    words = slug(ident).split("-")[:2]
    low = title.lower()
    return bool(words) and words != ["unknown"] and all(w in low for w in words)


@dataclass(frozen=True)
class Verdict:
    """same: the kernels and caches of the capture; similar: one processor family and ISA, other
    size or clock; different: other kernels run (other vendor, model, ISA or GPU)."""

    level: str  # "same" | "similar" | "different"
    reasons: tuple[str, ...] = ()

    @property
    def foreign(self) -> bool:
        return self.level == "different"


def compare(captured: dict, here: dict) -> Verdict:
    """How far a profile captured on `captured` is from the machine `here`."""
    reasons: list[str] = []
    g1, g2 = (captured.get("gpu") or {}).get("name"), (here.get("gpu") or {}).get("name")
    if g1 or g2:
        if g1 != g2:
            return Verdict("different", (f"GPU {g1 or 'none'} vs {g2 or 'none'}",))
        return Verdict("same")
    if captured.get("vendor") and here.get("vendor") and captured["vendor"] != here["vendor"]:
        reasons.append(f"vendor {captured['vendor']} vs {here['vendor']}")
    if captured.get("cpu") != here.get("cpu"):
        reasons.append(f"processor {captured.get('cpu')!r} vs {here.get('cpu')!r}")
    isa1, isa2 = captured.get("isa"), here.get("isa")
    if isa1 is not None and isa2 is not None and set(isa1) != set(isa2):
        gone, new = sorted(set(isa1) - set(isa2)), sorted(set(isa2) - set(isa1))
        reasons.append("ISA " + ", ".join([f"-{x}" for x in gone] + [f"+{x}" for x in new]))
    elif isa1 is None and captured.get("amx") and isa2 is not None and "amx_bf16" not in isa2:
        # an older sidecar's GEMM row block of 16 was AMX's: bf16 GEMMs without AMX run 10-20x
        # slower (measured: 2 x 512x1536x8960 bf16, 44-90 ms with AMX, 915 ms on a host without)
        reasons.append("ISA -amx_bf16 (the profile's GEMM row block of 16 was captured with AMX)")
    if reasons:
        return Verdict("different", tuple(reasons))
    minor = []
    if captured.get("caches") and here.get("caches") and captured["caches"] != here["caches"]:
        minor.append("cache sizes differ")
    if captured.get("threads") and here.get("threads") and captured["threads"] != here["threads"]:
        minor.append(f"threads {captured['threads']} vs {here['threads']}")
    return Verdict("similar", tuple(minor)) if minor else Verdict("same")


_HERE: dict | None = None


def here() -> dict:
    """This machine's identity without the bandwidth probe (cheap; memoised)."""
    global _HERE
    if _HERE is None:
        _HERE = identify(probe=False)
    return _HERE
