"""Helpers for the trainer tests: run the fixture stage in-process or through launch/train.py."""

import json
import os
import socket
import subprocess
import sys

import trainer_fixture_stage

from worldscape_jax.training import loop
from worldscape_jax.training.logging import read_jsonl

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE_CONFIG = os.path.join(REPO, "tests", "training", "trainer_fixture_stage.py")
SUBPROCESS_TIMEOUT_S = 240


def fixture_config(**overrides):
    config = trainer_fixture_stage.get_config("")
    config.log.tensorboard = False
    for key, value in overrides.items():
        section, _, field = key.rpartition("__")
        (config[section] if section else config)[field] = value
    return config


def run_in_process(workdir, **overrides):
    loop.train(fixture_config(**overrides), str(workdir))
    return read_jsonl(os.path.join(workdir, "metrics.jsonl"))


def losses(records):
    return {r["step"]: r["loss"] for r in records}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(workdir, config_arg="", extra=()):
    config = FIXTURE_CONFIG + (f":{config_arg}" if config_arg else "")
    return [sys.executable, os.path.join(REPO, "launch", "train.py"), f"--config={config}",
            f"--workdir={workdir}", "--config.log.tensorboard=False", *extra]


def launch_env(device_count=None):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.path.join(REPO, "tests", "training"))
    env.pop("XLA_FLAGS", None)
    if device_count:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={device_count}"
    return env


def check_finished(proc: subprocess.CompletedProcess | subprocess.Popen, output: str):
    assert proc.returncode == 0, f"launch/train.py failed (rc={proc.returncode}):\n{output[-4000:]}"


def run_lowering_script(script: str, *args: str, timeout: int) -> dict:
    """Runs a `*_lowering.py` script of this folder on 8 virtual CPU devices; its last stdout line (JSON)."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), script), *args], env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
