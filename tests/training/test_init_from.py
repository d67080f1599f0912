"""`config.init_from`: a fresh run starts from an export's params; a misfit export is named."""

import jax
import numpy as np
import pytest
from trainer_runs import fixture_config, run_in_process

from worldscape_jax.training import loop
from worldscape_jax.inference.loading import load_exported
from worldscape_jax.training.export import export_params, restore_trained_params


def test_run_starts_from_exported_params(tmp_path):
    first = tmp_path / "first"
    run_in_process(first, total_steps=4, ema__decay=0.0)
    params, _ = restore_trained_params(fixture_config(total_steps=4, ema__decay=0.0), first, use_ema=False)
    export = export_params(params, tmp_path / "export", fixture_config())

    config = fixture_config(total_steps=4, init_from=str(export))
    state, step = loop.restore_or_init(loop.build(config), config, _NoCheckpoint(), None)
    assert step == 0
    for got, want in zip(jax.tree.leaves(state.params), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    for got, want in zip(jax.tree.leaves(state.ema_params), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))

    # Starting from trained params, the first logged loss is that of the trained model, not of a fresh init.
    fresh = run_in_process(tmp_path / "fresh", total_steps=4, stop_at_step=1)
    resumed = run_in_process(tmp_path / "second", total_steps=4, stop_at_step=1, init_from=str(export))
    assert resumed[0]["loss"] < 0.8 * fresh[0]["loss"]


def test_misfit_export_is_named(tmp_path):
    params, _ = _exported_fixture_params(tmp_path)
    params["up"]["kernel"] = np.zeros((3, 3), np.float32)
    del params["down"]["bias"]
    params["extra"] = {"w": np.zeros(2, np.float32)}
    export = export_params(params, tmp_path / "bad", fixture_config())
    config = fixture_config(init_from=str(export))
    with pytest.raises(ValueError) as err:
        loop.restore_or_init(loop.build(config), config, _NoCheckpoint(), None)
    message = str(err.value)
    assert "config.init_from" in message and "['up']['kernel']: shape (3, 3)" in message
    assert "missing ['down']['bias']" in message and "unexpected ['extra']['w']" in message


def _exported_fixture_params(tmp_path):
    config = fixture_config()
    state = loop.initial_state(loop.build(config), config)
    export_params(state.params, tmp_path / "init", config)
    return load_exported(tmp_path / "init")


class _NoCheckpoint:
    def restore_latest(self, target, data_iter):
        return None
