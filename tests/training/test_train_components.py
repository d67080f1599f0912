"""Train state, optimizer, accumulation and precision against hand-written references."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from worldscape_jax.training import optim, step, train_state
from worldscape_jax.training.defaults import trainer_config
from worldscape_jax.training.stages import check_stage, get_stage


def test_ema_update_and_decay_schedule():
    ema = {"w": jnp.array([1.0, 2.0])}
    params = {"w": jnp.array([3.0, -2.0])}
    out = train_state.ema_update(ema, params, jnp.float32(0.9))
    np.testing.assert_allclose(out["w"], [0.9 * 1 + 0.1 * 3, 0.9 * 2 + 0.1 * -2], rtol=1e-6)
    assert float(train_state.ema_decay_at(jnp.int32(4), 0.99, 5)) == 0.0  # before start: copy
    assert float(train_state.ema_decay_at(jnp.int32(5), 0.99, 5)) == pytest.approx(0.99)


def test_cast_floating_leaves_integers_alone():
    tree = {"f": jnp.ones(2, jnp.float32), "i": jnp.ones(2, jnp.int32)}
    out = train_state.cast_floating(tree, jnp.bfloat16)
    assert out["f"].dtype == jnp.bfloat16 and out["i"].dtype == jnp.int32


def test_step_rng_depends_only_on_seed_and_step():
    tx = optax.sgd(0.1)
    s = train_state.create_train_state({"w": jnp.zeros(2)}, tx, jax.random.key(3), use_ema=False)
    s5 = s.replace(step=jnp.int32(5))
    expected = jax.random.fold_in(jax.random.key(3), 5)
    np.testing.assert_array_equal(jax.random.key_data(train_state.step_rng(s5)), jax.random.key_data(expected))


def _optim(**overrides):
    config = trainer_config("x", total_steps=100, global_batch=4).optim
    config.update(overrides)
    return config


def test_schedules_match_their_formulas():
    cos = optim.make_schedule(_optim(lr=1.0, warmup_steps=10, min_lr_ratio=0.1), total_steps=110)
    assert float(cos(5)) == pytest.approx(0.5)
    t = 60  # halfway through the cosine part: 0.1 + 0.9 * 0.5 * (1 + cos(pi / 2))
    assert float(cos(t)) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * (t - 10) / 100)), rel=1e-5)
    lin = optim.make_schedule(_optim(lr=2.0, schedule="warmup_linear", warmup_steps=4), total_steps=12)
    assert float(lin(2)) == pytest.approx(1.0) and float(lin(8)) == pytest.approx(1.0)
    const = optim.make_schedule(_optim(lr=3.0, schedule="constant", warmup_steps=0), total_steps=5)
    assert float(const(4)) == 3.0
    with pytest.raises(ValueError, match="config.optim.schedule"):
        optim.make_schedule(_optim(schedule="cosine"), 10)


def test_a_run_shorter_than_its_warmup_warms_up_over_a_fifth_of_it_and_says_so(capsys):
    short = optim.make_schedule(_optim(lr=1.0, warmup_steps=100), total_steps=20)
    assert "--config.optim.warmup_steps" in capsys.readouterr().out
    assert float(short(2)) == pytest.approx(0.5) and float(short(4)) == pytest.approx(1.0)
    assert float(short(20)) == pytest.approx(0.0, abs=1e-7)
    assert float(short(12)) == pytest.approx(0.5 * (1 + np.cos(np.pi * 8 / 16)), rel=1e-5)


def test_weight_decay_skips_vectors_and_clipping_bounds_the_update():
    tx, _ = optim.make_optimizer(_optim(lr=0.1, schedule="constant", weight_decay=0.5, grad_clip=0.0), 10)
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_allclose(updates["kernel"], -0.1 * 0.5 * np.ones((2, 2)), rtol=1e-6)
    np.testing.assert_array_equal(updates["bias"], 0.0)
    sgd, _ = optim.make_optimizer(_optim(name="sgd", lr=1.0, schedule="constant", grad_clip=1.0), 10)
    big = {"kernel": jnp.full((2, 2), 10.0), "bias": jnp.zeros(2)}
    upd, _ = sgd.update(big, sgd.init(params), params)
    assert float(optax.tree.norm(upd)) == pytest.approx(1.0, rel=1e-5)


def _linear_loss(params, batch, rng, config):
    pred = batch["x"] @ params["w"]
    loss = jnp.mean(jnp.square(pred - batch["y"]))
    return loss, {"mse": loss}


def _config(accumulation=1, compute="float32"):
    c = trainer_config("x", 10, 8)
    c.optim.accumulation_steps = accumulation
    c.precision.compute_dtype = compute
    return c


def test_gradient_accumulation_equals_the_full_batch_gradient():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    params = {"w": jax.random.normal(k1, (3, 2))}
    batch = {"x": jax.random.normal(k2, (8, 3)), "y": jax.random.normal(k3, (8, 2))}
    rng = jax.random.key(1)
    (loss1, _), g1 = step.make_grad_fn(_linear_loss, _config(1))(params, batch, rng)
    (loss4, m4), g4 = step.make_grad_fn(_linear_loss, _config(4))(params, batch, rng)
    np.testing.assert_allclose(loss4, loss1, rtol=1e-6)
    np.testing.assert_allclose(m4["mse"], loss1, rtol=1e-6)
    np.testing.assert_allclose(g4["w"], g1["w"], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="accumulation_steps=3"):
        step.make_grad_fn(_linear_loss, _config(3))(params, batch, rng)


def test_bf16_compute_keeps_fp32_master_weights_and_gradients():
    seen = {}

    def loss(params, batch, rng, config):
        seen["dtype"] = params["w"].dtype
        return _linear_loss(params, batch, rng, config)

    params = {"w": jnp.ones((3, 2), jnp.float32)}
    batch = {"x": jnp.ones((8, 3), jnp.bfloat16), "y": jnp.zeros((8, 2), jnp.bfloat16)}
    config = _config(compute="bfloat16")
    tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
    state = train_state.create_train_state(params, tx, jax.random.key(0), use_ema=True)
    new_state, metrics = jax.jit(step.make_train_step(loss, config, tx, schedule))(state, batch)
    assert seen["dtype"] == jnp.bfloat16
    assert new_state.params["w"].dtype == jnp.float32 and new_state.ema_params["w"].dtype == jnp.float32
    assert int(new_state.step) == 1 and metrics["loss"].dtype == jnp.float32
    with pytest.raises(ValueError, match="compute_dtype"):
        step.make_grad_fn(_linear_loss, _config(compute="fp8"))


def test_stage_lookup_names_what_is_missing():
    class Half:
        def init_params(self, rng, config):
            return {}

    with pytest.raises(TypeError, match="loss_fn"):
        check_stage(Half(), "half")
    with pytest.raises(ValueError, match="no_such_stage"):
        get_stage("no_such_stage")
