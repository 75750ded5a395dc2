"""Run `simspec ARGS` inside the test process, as a subprocess would, but without a new
interpreter.

Why: a fresh interpreter that loads a model imports torch and transformers again (about 8 s
each time on a 2-core machine), and the suite ran over its 15 minutes mostly on that. The
entry point itself stays covered by the tests that still start `python -m simspec.cli`
(tests/test_scenario_errors.py, the kill tests, tests/test_architecture.py).

What a subprocess would have isolated is restored after each call: the working directory,
the environment, sys.argv, torch's thread count and the warning filters (each call shows
its warnings on its own stderr, once per call, as a fresh process would). An exception that
escapes the command is a traceback on stderr and exit code 1, as in a subprocess.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import traceback
import warnings
from pathlib import Path


def _show(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def cli(*args: str, cwd: str | Path | None = None, env: dict[str, str] | None = None,
        **_ignored) -> subprocess.CompletedProcess:
    """`simspec ARGS` in this process; returns what subprocess.run(capture_output=True, text=True)
    would. `env` holds variables to set for the call (added to os.environ, then restored)."""
    from simspec import cli as entry

    argv = ["simspec", *map(str, args)]
    out, err = io.StringIO(), io.StringIO()
    saved_cwd, saved_env, saved_argv = os.getcwd(), dict(os.environ), sys.argv
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    code: int = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        if env:
            os.environ.update({k: str(v) for k, v in env.items()})
        sys.argv = argv
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            warnings.resetwarnings()
            warnings.simplefilter("default")
            warnings.showwarning = _show  # pytest records them otherwise
            try:
                entry.main()
            except SystemExit as exc:
                if exc.code is None:
                    code = 0
                elif isinstance(exc.code, int):
                    code = exc.code
                else:
                    print(exc.code, file=sys.stderr)
                    code = 1
            except Exception:  # noqa: BLE001 - what an uncaught exception does to a process
                traceback.print_exc(file=sys.stderr)
                code = 1
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(threads if threads is not None else os.cpu_count() or 1)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
