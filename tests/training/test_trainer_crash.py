"""A process killed mid-run (async save in flight) resumes to the same losses as an uninterrupted run."""

import os
import subprocess
import sys

import numpy as np
from trainer_runs import SUBPROCESS_TIMEOUT_S, launch_env, losses, run_in_process

from worldscape_jax.training.logging import read_jsonl

HERE = os.path.dirname(os.path.abspath(__file__))


def test_killed_process_resumes_to_the_uninterrupted_losses(tmp_path):
    crashed = tmp_path / "crashed"
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "trainer_crash_run.py"), str(crashed), "4"],
        env=launch_env(), capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S,
    )
    assert proc.returncode == 137, proc.stdout + proc.stderr
    assert [r["step"] for r in read_jsonl(crashed / "metrics.jsonl")] == [1, 2, 3, 4]
    resumed = losses(run_in_process(crashed))
    full = losses(run_in_process(tmp_path / "full"))
    assert list(resumed) == list(full) == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(list(resumed.values()), list(full.values()), rtol=1e-6, atol=0)
