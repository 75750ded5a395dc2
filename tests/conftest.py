import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

try:  # hypothesis is a test dependency (pyproject's `test` extra); only the fuzz tests need it
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis.database import DirectoryBasedExampleDatabase
except ImportError:  # pragma: no cover
    settings = None

if settings is not None:
    # No per-example deadline anywhere: how fast this machine runs a case must never fail a
    # test (the fuzz cases are bounded by construction instead, see tests/test_fuzz_inputs.py).
    # CI: a fixed seed (the same cases every run) and no example database. Locally: random
    # cases, failures remembered under .pytest_cache/ (git-ignored) and replayed first.
    _common = dict(deadline=None, print_blob=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                          HealthCheck.filter_too_much])
    settings.register_profile("ci", derandomize=True, database=None, **_common)
    settings.register_profile(
        "dev", database=DirectoryBasedExampleDatabase(Path(__file__).resolve().parents[1] / ".pytest_cache" / "hypothesis"),
        **_common)
    # HYPOTHESIS_PROFILE=hunt: a local bug hunt that reports the first failure as found (no shrinking)
    settings.register_profile("hunt", parent=settings.get_profile("dev"),
                              phases=[Phase.explicit, Phase.reuse, Phase.generate])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


def pytest_terminal_summary(terminalreporter):
    """How many fuzz cases ran and how they ended (the CI log keeps the count)."""
    import sys

    mod = sys.modules.get("test_fuzz_inputs")
    cases = getattr(mod, "CASES", None)
    if cases:
        terminalreporter.write_line("fuzz cases: " + ", ".join(f"{k}={v}" for k, v in sorted(cases.items())))


import pytest  # noqa: E402


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module (restored after): tiny models gain nothing from two, and on
    a loaded 2-core machine two threads spin against each other (measured: 50x slower). A module
    asks for it with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
