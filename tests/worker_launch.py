"""Run a test file as a worker script in its own process group, killing the group if it hangs.

The DDP tests start their clustering runs this way (``python tests/test_….py SPEC_JSON``):
a hung collective then fails the test after a timeout instead of hanging pytest, and the
ranks Lightning spawns share the worker's session, so one kill ends them all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def launch_worker(script: str, spec: dict[str, Any], out: Path, timeout_s: int, what: str) -> str:
    """``python SCRIPT json(spec)`` with cwd ``out``; its output, or the test fails on a hang or a non-zero exit."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [sys.executable, script, json.dumps(spec)],
        cwd=out,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        log, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail(f"{what} hung for {timeout_s} s:\n{log[-3000:]}")
    if proc.returncode != 0:
        pytest.fail(f"{what} failed (exit {proc.returncode}):\n{log[-3000:]}")
    return log
