"""Mesh construction, logical-axis shardings, FLOP/MFU accounting, metric files and sample media."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P
from PIL import Image

from worldscape_jax.training import logging as tlog
from worldscape_jax.training import media, sharding
from worldscape_jax.training.train_state import create_train_state


def test_mesh_shape_fills_the_free_axis_and_rejects_bad_sizes():
    assert sharding.mesh_shape({"data": -1, "fsdp": 4, "tensor": 2}, 16) == (2, 4, 2, 1)
    with pytest.raises(ValueError, match="needs 8 devices"):
        sharding.mesh_shape({"data": 2, "fsdp": 4}, 4)
    with pytest.raises(ValueError, match="unknown axes"):
        sharding.mesh_shape({"model": 2}, 2)
    with pytest.raises(ValueError, match=r"logical_axis_rules\[0\]"):
        sharding.normalize_rules([("embed", "model")])


def test_optimizer_state_follows_the_param_specs():
    params = {"kernel": jnp.zeros((4, 8)), "bias": jnp.zeros((8,))}
    specs = {"kernel": P("embed", "mlp"), "bias": P("mlp")}
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3))
    abstract = jax.eval_shape(lambda: create_train_state(params, tx, jax.random.key(0), use_ema=True))
    logical = sharding.state_logical_specs(abstract, specs, tx)
    adam = logical.opt_state[1][0]
    assert adam.mu == specs and adam.nu == specs and adam.count == P()
    assert logical.ema_params == specs and logical.step == P()
    mesh = sharding.make_mesh({"data": -1})
    shardings = sharding.logical_to_shardings(logical, mesh, sharding.DEFAULT_LOGICAL_AXIS_RULES)
    assert shardings.params["kernel"].spec == P("fsdp", "tensor")


def test_indivisible_shapes_raise_naming_the_parameter():
    devices = np.array(jax.devices() * 1)
    mesh = jax.sharding.Mesh(devices.reshape(1, 1, 1, -1), sharding.MESH_AXES)
    fake = jax.sharding.NamedSharding(mesh, P(None))
    abstract = {"layer": {"kernel": jax.ShapeDtypeStruct((3,), jnp.float32)}}
    sharding.check_divisible(abstract, {"layer": {"kernel": fake}}, "params")  # fine: unsplit

    class Bigger:  # a stand-in sharding that splits dim 0 two ways
        spec = P("fsdp")
        mesh = type("M", (), {"shape": {"fsdp": 2}})()

    with pytest.raises(ValueError, match=r"params\['layer'\]\['kernel'\] has shape \(3,\)"):
        sharding.check_divisible(abstract, {"layer": {"kernel": Bigger()}}, "params")


def test_step_flops_counts_a_matmul_and_mfu_divides_by_peak():
    m, k, n = 64, 32, 16
    compiled = jax.jit(lambda a, b: a @ b).lower(jnp.ones((m, k)), jnp.ones((k, n))).compile()
    flops = tlog.step_flops(compiled)
    assert flops == pytest.approx(2 * m * k * n, rel=0.05)
    assert tlog.mfu(1e12, 0.5, 4e12) == pytest.approx(0.5)
    assert tlog.mfu(None, 0.5, 4e12) is None
    h100 = type("D", (), {"platform": "gpu", "device_kind": "NVIDIA H100 80GB HBM3"})()
    assert tlog.peak_flops_per_device(h100) == 989e12
    unknown = type("D", (), {"platform": "gpu", "device_kind": "Mystery"})()
    assert tlog.peak_flops_per_device(unknown) is None


def test_metric_writer_jsonl_tensorboard_and_truncation(tmp_path):
    writer = tlog.MetricWriter(str(tmp_path), tensorboard=True)
    for s in range(1, 5):
        writer.write(s, {"loss": 1.0 / s})
    writer.truncate_after(2)
    writer.write(3, {"loss": 9.0})
    writer.close()
    records = tlog.read_jsonl(str(tmp_path / "metrics.jsonl"))
    assert [(r["step"], r["loss"]) for r in records] == [(1, 1.0), (2, 0.5), (3, 9.0)]
    events = os.listdir(tmp_path / "tensorboard")
    assert any(e.startswith("events.out.tfevents") for e in events)
    with pytest.raises(ValueError, match="'vec'"):
        tlog.scalarize({"vec": jnp.ones(3)})


def test_contact_sheet_places_evenly_spaced_frames_and_files_are_written(tmp_path):
    n, f, h, w = 2, 5, 6, 4
    videos = np.zeros((n, f, h, w, 3), np.uint8)
    for i in range(n):
        for t in range(f):
            videos[i, t] = 10 * t + 100 * i
    sheet = media.contact_sheet(videos, max_columns=3, gap=2)
    assert sheet.shape == (2 * h + 2, 3 * w + 2 * 2, 3)
    for r in range(n):
        for c, t in enumerate([0, 2, 4]):
            assert sheet[r * (h + 2), c * (w + 2), 0] == 10 * t + 100 * r
    mp4, png = media.write_samples(tmp_path, "s", videos, fps=4)
    full_sheet = media.contact_sheet(videos)
    assert Image.open(png).size == (full_sheet.shape[1], full_sheet.shape[0])
    frames = media.read_mp4(mp4)
    assert frames.shape == (f, h, n * w, 3)
    # Lossy, but the clips stay recognisable: clip 1 (value 100 + 10 t) is brighter than clip 0.
    assert frames[:, :, w:].mean() > frames[:, :, :w].mean() + 50
    with pytest.raises(ValueError, match="uint8"):
        media.contact_sheet(videos.astype(np.float32))


def test_logical_to_mesh_spec_follows_rule_order_and_never_reuses_a_mesh_axis():
    rules = sharding.normalize_rules(sharding.DEFAULT_LOGICAL_AXIS_RULES)
    spec = sharding.logical_to_mesh_spec
    assert spec(P("embed", "mlp"), rules) == P("fsdp", "tensor")
    assert spec(P("embed", "embed"), rules) == P("fsdp", None)  # one mesh axis per array
    assert spec(P("text_embed", "embed"), rules) == P(None, "fsdp")  # 'embed' comes first in the rules
    assert spec(P("activation_batch", "activation_length", "activation_heads"), rules) == P(
        ("data", "fsdp"), "context", "tensor")
    assert spec(P(None, "layers", "kv"), rules) == P(None, None, None)
    with pytest.raises(ValueError, match="'embd'"):
        spec(P("embd"), rules)


def test_jaxpr_flops_count_matmuls_convolutions_and_scan_lengths():
    import flax.linen as nn

    from worldscape_jax.training.flops import function_flops

    assert function_flops(lambda a, b: a @ b, jnp.ones((64, 32)), jnp.ones((32, 16))) == 2 * 64 * 32 * 16

    def stack(x, ws):
        return jax.lax.scan(lambda h, w: (jnp.tanh(h @ w), None), x, ws)[0].sum()

    x, ws = jnp.ones((8, 16)), jnp.ones((5, 16, 16))
    assert function_flops(stack, x, ws) == 5 * 2 * 8 * 16 * 16
    # Gradient wrt both: forward + d/dx + d/dW, three matmuls per layer.
    assert function_flops(jax.grad(stack, argnums=(0, 1)), x, ws) == 3 * 5 * 2 * 8 * 16 * 16
    conv = nn.Conv(8, (3, 3))
    params = conv.init(jax.random.key(0), jnp.ones((2, 10, 10, 4)))
    assert function_flops(conv.apply, params, jnp.ones((2, 10, 10, 4))) == 2 * (2 * 10 * 10 * 8) * 9 * 4
