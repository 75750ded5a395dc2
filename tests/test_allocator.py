"""retain_freed_memory: a decode-like allocation pattern stops page-faulting (Linux/glibc)."""

import subprocess
import sys

import pytest

# a KV cache grown by torch.cat plus a GQA-style expansion and a big temporary, as in one forward
SCRIPT = """
import resource, sys, torch
from simspec.models.allocator import retain_freed_memory
if sys.argv[1] == "on":
    assert retain_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
k = torch.zeros(8, 2, 64, 128)
f0 = faults()
for i in range(40):
    k = torch.cat([k, torch.ones(8, 2, 256, 128)], dim=2)
    r = k.repeat_interleave(6, dim=1).sum()
    x = torch.ones(16 << 20, dtype=torch.float32); s = x.sum(); del x
print(faults() - f0)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_decode_like_allocations_stop_faulting():
    def run(mode):
        out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
        return int(out.stdout.strip().splitlines()[-1])

    off, on = run("off"), run("on")
    assert off > 1_000_000  # ~3M measured: every big block faulted in again (4 KiB pages)
    assert on * 4 < off  # ~0.33M measured: only the heap's growth faults
