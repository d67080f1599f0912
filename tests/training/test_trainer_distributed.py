"""launch/train.py on 8 virtual devices (fsdp x tensor) and as 2 processes matches one device."""

import json
import os
import subprocess

import numpy as np
import pytest
from trainer_runs import (SUBPROCESS_TIMEOUT_S, check_finished, free_port, launch_command, launch_env, losses,
                          run_in_process)

from worldscape_jax.training.logging import read_jsonl


@pytest.fixture(scope="module")
def single_device(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("one_device")
    return losses(run_in_process(workdir))


def test_eight_virtual_devices_with_fsdp_and_tensor_sharding(single_device, tmp_path):
    proc = subprocess.run(
        launch_command(tmp_path, "fsdp=4,tensor=2"), env=launch_env(8), capture_output=True, text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
    )
    check_finished(proc, proc.stdout + proc.stderr)
    summary = json.load(open(tmp_path / "sharding.json"))
    assert summary["mesh"] == {"data": 1, "fsdp": 4, "tensor": 2, "context": 1}
    # Parameters are really split: the up-projection kernel over fsdp (embed) and tensor (mlp).
    assert summary["params"]["['up']['kernel']"] == "(4, 16) P('fsdp', 'tensor')"
    assert summary["params"]["['down']['kernel']"] == "(16, 4) P('tensor', 'fsdp')"
    sharded = losses(read_jsonl(tmp_path / "metrics.jsonl"))
    assert sharded.keys() == single_device.keys()
    np.testing.assert_allclose(list(sharded.values()), list(single_device.values()), rtol=1e-5)


def test_two_processes_on_localhost(single_device, tmp_path):
    port = free_port()
    procs = [
        subprocess.Popen(
            launch_command(tmp_path, extra=(f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                                            f"--process_id={i}")),
            env=launch_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=SUBPROCESS_TIMEOUT_S)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outputs):
        check_finished(p, out)
    summary = json.load(open(tmp_path / "sharding.json"))
    assert summary["processes"] == 2 and summary["mesh"]["data"] == 2
    two_process = losses(read_jsonl(tmp_path / "metrics.jsonl"))
    assert two_process.keys() == single_device.keys()
    np.testing.assert_allclose(list(two_process.values()), list(single_device.values()), rtol=1e-5)
    assert os.path.isdir(tmp_path / "checkpoints" / "6" / "data_iter")
    assert sorted(os.listdir(tmp_path / "checkpoints" / "6" / "data_iter")) == [
        "commit_success.txt", "process_0-of-2.json", "process_1-of-2.json"]
