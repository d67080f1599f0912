"""Launch scripts (worldscape_jax/cli.py): a user's mistake is one line on stderr and exit status 2, a bug
keeps its traceback, and --help exits 0 with the docstring's examples on their own lines."""

import os
import shutil
import subprocess
import sys

import pytest
from absl import flags

from worldscape_jax import cli
from worldscape_jax.errors import ConfigError
from worldscape_jax.inference.loading import resolve_asset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _launch(script, *args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, os.path.join(REPO, "launch", script), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def _one_line_error(result, *expected):
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.fixture
def truncated_teacher(tmp_path):
    directory = tmp_path / "teacher"
    shutil.copytree(resolve_asset("asset:teacher_tiny"), directory, ignore=shutil.ignore_patterns("metrics.jsonl"))
    params = directory / "params.msgpack"
    params.write_bytes(params.read_bytes()[:1000])
    return str(directory)


@pytest.mark.parametrize("args, expected", [
    (["--teacher=asset:vae_tiny"], ["asset:vae_tiny", "stage 'vae'", "expected a teacher or a causal student"]),
    (["--actions=zz"], ["--actions=zz", "unknown key(s) ['z']"]),
    (["--actions="], ["--actions=", "non-empty"]),
    (["--scenes=0"], ["--scenes=0"]),
    (["--teacher=/missing/dir"], ["/missing/dir: no such directory"]),
])
def test_generate_input_errors_are_one_line(args, expected):
    _one_line_error(_launch("generate.py", *args), *expected)


def test_a_truncated_params_file_is_one_line(truncated_teacher):
    _one_line_error(_launch("generate.py", f"--teacher={truncated_teacher}"), "params.msgpack: 1000 bytes", "truncated")


@pytest.mark.parametrize("args, expected", [
    (["--config", "configs/nope.py:tiny"], ["--config: config file 'configs/nope.py' does not exist"]),
    (["--config", "configs/flow_dit.py:tiny", "--config.optim.lrr=1"], ["--config.optim.lrr", "no field 'lrr'",
                                                                         "did you mean 'lr'"]),
    (["--config", "configs/flow_dit.py:tiny", "--config.mesh.fsdp=3"], ["config.mesh", "multiple of 3 devices"]),
    (["--config", "configs/flow_dit.py:tinyy"], ["--config=configs/flow_dit.py:tinyy", "tinyy"]),
])
def test_train_config_flag_errors_are_one_line(args, expected, tmp_path):
    _one_line_error(_launch("train.py", *args, f"--workdir={tmp_path}"), *expected)


def test_help_exits_zero_and_keeps_the_examples_line_breaks():
    result = _launch("convert_wan.py", "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "diffusion_pytorch_model.safetensors \\\n      --config configs/dit.py:wan1_3b,fun_control" in result.stdout


def _run_main(monkeypatch, error):
    def main(argv):
        raise error

    monkeypatch.setattr(sys, "argv", ["prog"])
    cli.run(main)


def test_input_errors_in_main_exit_2_and_bugs_keep_their_traceback(monkeypatch, capsys):
    flags.FLAGS.unparse_flags()
    with pytest.raises(SystemExit) as exit_info:
        _run_main(monkeypatch, ConfigError("config.data", "must be\npositive", key="frames"))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: config.data, field 'frames': must be positive\n"
    with pytest.raises(ZeroDivisionError):
        _run_main(monkeypatch, ZeroDivisionError("a bug"))
    with pytest.raises(ValueError):  # a ValueError that is not the project's input error is a bug too
        _run_main(monkeypatch, ValueError("a bug"))
