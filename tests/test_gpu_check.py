"""launch/gpu_check.sh, the one script a session lent a GPU runs at once: every step's GPU command must
parse here and the wan1_3b stream must trace, so that a renamed flag or a shape error fails the suite
instead of spending the GPU session's minutes."""

import collections
import json
import os
import shlex
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "launch", "gpu_check.sh")

# Run in a subprocess per bench (absl flags are process-global, and the benches share flag names):
# parse each argv as the bench's own `main` would, without running it.
PARSE = """
import importlib.util, json, sys
from absl import flags
from worldscape_jax import cli
path, argvs = sys.argv[1], json.loads(sys.argv[2])
sys.argv = [path, *argvs[0]]  # config_flags reads the config's override flags from sys.argv
spec = importlib.util.spec_from_file_location("bench_under_test", path)
module = sys.modules["bench_under_test"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
for argv in argvs:
    if hasattr(module, "parse_args"):  # argparse (bench_attention.py)
        module.parse_args(argv)
    else:
        cli.parse_flags([path, *argv])
        flags.FLAGS.unparse_flags()
"""


def _env(**extra):
    return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO, **extra)


def gpu_commands() -> dict[str, list[str]]:
    out = subprocess.run(["bash", SCRIPT, "--print_commands"], cwd=REPO, capture_output=True, text=True, check=True)
    return {name: shlex.split(command) for name, command in (line.split("\t") for line in out.stdout.splitlines())}


def _parse(script: str, argvs: list[list[str]]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PARSE, os.path.join(REPO, script), json.dumps(argvs)], cwd=REPO,
                          env=_env(), capture_output=True, text=True, timeout=300)


def test_every_step_measures_what_was_asked_and_writes_its_figures():
    commands = gpu_commands()
    assert set(commands) == {"attention", "dit_cudnn", "dit_pallas", "dit_xla", "stream_rolling", "stream_maco",
                             "teacher_train"}
    for name, argv in commands.items():
        assert argv[0] == "python" and argv[1].startswith("launch/bench_"), (name, argv)
        assert "--json=@JSON@" in argv, f"{name}: its figures would not reach gpu_check.json"


def test_every_gpu_command_parses_with_its_bench():
    by_script = collections.defaultdict(list)
    for argv in gpu_commands().values():
        by_script[argv[1]].append(argv[2:])
    assert len(by_script) == 4
    for script, argvs in by_script.items():
        result = _parse(script, argvs)
        assert result.returncode == 0, f"{script} rejects its gpu_check.sh command: {result.stderr[-2000:]}"


@pytest.mark.parametrize("script, argv", [
    ("launch/bench_dit.py", ["--scale=wan1_3b", "--atention=cudnn"]),
    ("launch/bench_stream.py", ["--memory=lru"]),
    ("launch/bench_attention.py", ["--iterations=5"]),
    ("launch/bench_train.py", ["--config=configs/teacher.py:wan1_3b", "--config.global_batchsize=1"]),
])
def test_the_parse_check_rejects_a_renamed_flag(script, argv):
    assert _parse(script, [argv]).returncode == 2  # a usage error, not a crash


@pytest.mark.parametrize("memory, cache_note", [("rolling", "rolling"), ("maco", "maco")])
def test_wan1_3b_stream_traces_at_832x480(tmp_path, memory, cache_note):
    out = tmp_path / "stream.json"
    result = subprocess.run([sys.executable, "launch/bench_stream.py", "--scale=wan1_3b", f"--memory={memory}",
                             "--dry_run", f"--json={out}"], cwd=REPO, env=_env(), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    # one 3-latent-frame chunk decodes to 3 x 4 pixel frames (the VAE's temporal factor) at 480x832
    assert figures["frames_shape"] == [1, 12, 480, 832, 3]
    assert figures["memory"] == cache_note
    assert 1.3e9 * 4 < figures["param_bytes"] < 1.8e9 * 4 + 0.5e9  # ~1.4 B float32 DiT params + the VAE


def test_without_a_gpu_it_stops_at_once_and_says_so(tmp_path):
    out = tmp_path / "gpu_check.json"
    result = subprocess.run(["bash", SCRIPT, str(out)], cwd=REPO, env=_env(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 3
    assert "NO GPU" in result.stdout
    report = json.loads(out.read_text())
    assert report["status"] == "no_gpu" and "steps" not in report
    assert (tmp_path / "gpu_check.log").exists()


@pytest.mark.slow
def test_dry_run_of_three_steps_records_figures_and_statuses(tmp_path):
    out = tmp_path / "gpu_check.json"
    result = subprocess.run(["bash", SCRIPT, "--dry_run", str(out)], cwd=REPO, capture_output=True, text=True,
                            env=_env(GPU_CHECK_ONLY="attention,stream_maco,teacher_train"), timeout=900)
    assert result.returncode == 0, result.stdout[-3000:]
    steps = json.loads(out.read_text())["steps"]
    assert {n for n, s in steps.items() if s["status"] == "ok"} == {"attention", "stream_maco", "teacher_train"}
    assert all(s["status"] == "skipped" for n, s in steps.items() if n not in ("attention", "stream_maco",
                                                                                 "teacher_train"))
    assert steps["stream_maco"]["figures"]["frames_shape"] == [1, 12, 480, 832, 3]
    train = steps["teacher_train"]["figures"]
    assert train["synthetic_data"] and 0 < train["mfu"] < 1 and train["step_s_median"] > 0
    assert any(row["impl"] == "xla" and row["status"] == "ok" for row in steps["attention"]["figures"])
