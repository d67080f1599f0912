"""Kill-and-resume reproduces an uninterrupted run; a corrupt latest checkpoint falls back."""

import glob
import logging
import os

import jax
import numpy as np
import pytest
import trainer_fixture_stage
from trainer_runs import fixture_config, losses, run_in_process

from worldscape_jax.training import loop
from worldscape_jax.training.checkpointing import Checkpointer

TOTAL = 6


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("full")
    return workdir, run_in_process(workdir, total_steps=TOTAL)


def test_losses_fall_and_every_step_is_logged(uninterrupted):
    _, records = uninterrupted
    assert [r["step"] for r in records] == list(range(1, TOTAL + 1))
    assert records[-1]["loss"] < 0.7 * records[0]["loss"]
    assert all(np.isfinite(r["grad_norm"]) and r["lr"] >= 0 for r in records)


def test_kill_and_resume_gives_the_same_losses(uninterrupted, tmp_path):
    _, full = uninterrupted
    # Preempted after step 3 (the last checkpoint is at step 2), then rerun in the same workdir.
    first = run_in_process(tmp_path, total_steps=TOTAL, stop_at_step=3)
    assert [r["step"] for r in first] == [1, 2, 3]
    resumed = run_in_process(tmp_path, total_steps=TOTAL)
    assert [r["step"] for r in resumed] == list(range(1, TOTAL + 1))  # step 3 re-logged once
    np.testing.assert_allclose(list(losses(resumed).values()), list(losses(full).values()), rtol=1e-6, atol=0)
    np.testing.assert_allclose(
        [r["param_norm"] for r in resumed], [r["param_norm"] for r in full], rtol=1e-6, atol=0
    )


def test_rerunning_a_finished_run_says_so_and_trains_nothing(uninterrupted, tmp_path, capsys):
    source, full = uninterrupted
    os.system(f"cp -r {source} {tmp_path / 'run'}")
    again = run_in_process(tmp_path / "run", total_steps=TOTAL)
    assert "already finished" in capsys.readouterr().out
    assert again == full


def test_kill_and_resume_of_a_stage_reading_through_the_grain_pipeline(tmp_path):
    """The checkpoint carries data/pipeline.py's iterator (shuffle, epochs, random start and crop): a run
    stopped after step 3 and resumed from its step-2 checkpoint sees the batches an uninterrupted one does."""
    stage = {"stage": "trainer_fixture_stage:PIPELINE_STAGE", "checkpoint__async_save": False}
    full = run_in_process(tmp_path / "full", total_steps=TOTAL, **stage)
    run_in_process(tmp_path / "resumed", total_steps=TOTAL, stop_at_step=3, **stage)
    resumed = run_in_process(tmp_path / "resumed", total_steps=TOTAL, **stage)
    assert [r["step"] for r in resumed] == list(range(1, TOTAL + 1))
    np.testing.assert_allclose(list(losses(resumed).values()), list(losses(full).values()), rtol=1e-6, atol=0)


def _corrupt(step_dir):
    for path in glob.glob(os.path.join(step_dir, "state", "**", "*"), recursive=True):
        if os.path.isfile(path):
            with open(path, "wb") as f:
                f.write(b"not a checkpoint")


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(uninterrupted, tmp_path, caplog):
    source, _ = uninterrupted
    ckpt_dir = tmp_path / "checkpoints"
    os.system(f"cp -r {source / 'checkpoints'} {ckpt_dir}")
    ckpt = Checkpointer(ckpt_dir, keep=3)
    assert ckpt.all_steps() == [2, 4, 6]
    _corrupt(ckpt_dir / "6")

    config = fixture_config(total_steps=TOTAL)
    setup = loop.build(config)
    data_iter = setup.stage.make_dataset(config, 0, 1)
    with caplog.at_level(logging.WARNING):
        state, step = ckpt.restore_latest(loop.abstract_target(setup), data_iter)
    ckpt.close()
    assert step == 4 and int(state.step) == 4
    assert any("step 6" in r.getMessage() and "corrupt" in r.getMessage() for r in caplog.records)
    assert not (ckpt_dir / "6").exists()  # removed so that step 6 can be written again
    # The iterator resumed where step 4 left it: the next batch is global batch 4.
    expected = trainer_fixture_stage.example(4 * config.global_batch, config.seed)["video"]
    np.testing.assert_array_equal(next(data_iter)["video"][0], expected)
    # The restored params are the ones saved at step 4, not a fresh init: they differ from init.
    fresh = loop.initial_state(setup, config)
    assert not np.allclose(jax.tree.leaves(state.params)[0], jax.tree.leaves(fresh.params)[0])


def test_no_readable_checkpoint_returns_none(tmp_path):
    ckpt = Checkpointer(tmp_path / "empty", keep=2)
    config = fixture_config()
    setup = loop.build(config)
    assert ckpt.restore_latest(loop.abstract_target(setup), None) is None
    ckpt.close()
