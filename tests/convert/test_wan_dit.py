"""Wan2.1 DiT checkpoint -> Flax params, checked against a NumPy Wan forward on the torch tensors.

The state dicts are random, with Wan's exact key names and shapes at tiny size (the key list is
written in `wan_reference.py` from the official naming, not taken from the converter). They are
saved as .safetensors and as torch-format .pth (written without torch), read back, converted, and
the converted params must reproduce NumPy computations done directly on the torch-layout weights:
the patch-embedding conv, the time-embedding MLP, the modulated head with Wan's unpatchify order,
and the whole model. A transposed or mis-stacked tensor fails these.
"""

import json
import os
import subprocess
import sys

import jax
import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
import wan_reference as ref
from torch_pickle_writer import save_torch_state_dict

from worldscape_jax.configs.dit import get_config
from worldscape_jax.convert import checkpoint_io
from worldscape_jax.convert.state_dict import ConversionError
from worldscape_jax.convert.wan_dit import dit_params_from_state_dict, expected_checkpoint_shapes
from worldscape_jax.models.dit import build_dit

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEADS, FREQ, LAYERS, TEXT_DIM, CLIP_DIM = 2, 64, 4, 32, 32
B, F, H, W = 1, 2, 4, 4  # latent video: 2 frames of 4x4 -> 2x2 tokens per frame


def tiny_shapes(in_dim=16, image_branch=False):
    return ref.original_shapes(dim=128, ffn=384, freq=FREQ, text_dim=TEXT_DIM, in_dim=in_dim, out_dim=16,
                               layers=LAYERS, clip_dim=CLIP_DIM if image_branch else None)


@pytest.fixture(scope="module")
def t2v_state_dict():
    return ref.random_state_dict(tiny_shapes())


@pytest.fixture(scope="module")
def fun_state_dict():
    return ref.random_state_dict(tiny_shapes(in_dim=48, image_branch=True), seed=1)


@pytest.fixture(scope="module")
def i2v_state_dict():
    return ref.random_state_dict(tiny_shapes(in_dim=36, image_branch=True), seed=4)


def inputs(in_dim, image_branch, seed=2):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, F, H, W, in_dim)).astype(np.float32)
    t = np.array([[250.0, 875.0]], np.float32)  # per-frame timesteps, different per frame
    text = rng.normal(size=(B, 8, TEXT_DIM)).astype(np.float32)
    clip = rng.normal(size=(B, 4, CLIP_DIM)).astype(np.float32) if image_branch else None
    return x, t, text, clip


def run_model(cfg, params, x, t, text, clip=None, camera=None, capture=False):
    kwargs = {"cond": x[..., 16:]} if x.shape[-1] > 16 else {}
    kwargs.update({k: v for k, v in (("clip", clip), ("camera", camera)) if v is not None})
    model = build_dit(cfg)
    if not capture:
        return np.asarray(model.apply(params, x[..., :16], t, text, **kwargs))
    out, state = model.apply(params, x[..., :16], t, text, **kwargs, capture_intermediates=True,
                             mutable=["intermediates"])
    return np.asarray(out), jax.tree.map(np.asarray, state["intermediates"])


def reference_forward(sd, x, t, text, clip=None, text_len=None):
    out = ref.wan_forward(sd, np.moveaxis(x, -1, 1), t, text, heads=HEADS, freq_dim=FREQ, clip=clip, layers=LAYERS,
                          text_len=text_len)
    return np.moveaxis(out, 1, -1)


def assert_close(actual, expected, name, rel=2e-5):
    scale = np.abs(expected).max()
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rel * max(scale, 1.0), err_msg=name)


def assert_same_params(a, b):
    flat_a, flat_b = jax.tree_util.tree_flatten_with_path(a)[0], jax.tree_util.tree_flatten_with_path(b)[0]
    assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
    for (path, x), (_, y) in zip(flat_a, flat_b):
        np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("file_format", ["safetensors", "pth"])
def test_t2v_checkpoint_file_converts_and_matches_numpy_wan(tmp_path, t2v_state_dict, file_format):
    path = tmp_path / f"wan.{file_format}"
    if file_format == "safetensors":
        safetensors.numpy.save_file(t2v_state_dict, str(path))
    else:
        save_torch_state_dict(path, t2v_state_dict)
    loaded = checkpoint_io.load_state_dict(path)
    cfg = get_config("tiny")
    converted = dit_params_from_state_dict(loaded, cfg, source=str(path))
    report = converted.report
    assert report.naming == "original" and report.tensors_read == len(t2v_state_dict)
    assert report.params_left_at_init == {} and report.keys_ignored == {}
    x, t, text, _ = inputs(16, False)
    assert_close(run_model(cfg, converted.params, x, t, text), reference_forward(t2v_state_dict, x, t, text),
                 "whole model")


def test_converted_pieces_match_numpy_on_torch_weights(t2v_state_dict):
    """Patch-embedding conv, time MLP + projection, text MLP, and the head with Wan's unpatchify."""
    sd, cfg = t2v_state_dict, get_config("tiny")
    params = dit_params_from_state_dict(sd, cfg).params
    x, t, text, _ = inputs(16, False)
    out, inter = run_model(cfg, params, x, t, text, capture=True)
    captured = lambda name: inter[name]["__call__"][0]

    tokens = ref.patch_embed(sd, np.moveaxis(x, -1, 1), (1, 2, 2))  # [B, F*h*w, dim], torch Conv3d math
    assert_close(captured("patch_embedding").reshape(tokens.shape), tokens, "patch embedding")
    e, e0 = ref.time_embeddings(sd, t, FREQ)
    assert_close(captured("time_embedding_2"), e, "time embedding e")
    assert_close(captured("time_projection"), e0.reshape(B, F, -1), "time projection e0 (6 x dim, in order)")
    context = ref.linear(sd, "text_embedding.2", ref.gelu_tanh(ref.linear(sd, "text_embedding.0", text)))
    assert_close(captured("text_embedding_2"), context, "text embedding")

    # Head: Wan's modulation (shift = row 0, scale = row 1, plus e) and Linear on the model's LayerNorm
    # output, then Wan's unpatchify (channels (pt, ph, pw, c)) must give the model's output.
    normed = captured("head_norm").reshape(B, -1, 128).astype(np.float64)
    mod = sd["head.modulation"][0][None, None] + np.repeat(e, 4, axis=1)[:, :, None]
    head_out = ref.linear(sd, "head.head", normed * (1 + mod[:, :, 1]) + mod[:, :, 0])
    assert_close(captured("head").reshape(head_out.shape), head_out, "head linear")
    video = ref.unpatchify(head_out, (F, H // 2, W // 2), (1, 2, 2), 16)
    assert_close(out, np.moveaxis(video, 1, -1), "unpatchify channel order")


def test_diffusers_naming_gives_the_same_params(t2v_state_dict, fun_state_dict):
    for sd, config in ((t2v_state_dict, "tiny"), (fun_state_dict, "tiny,fun_control")):
        cfg = get_config(config)
        diffusers = ref.to_diffusers_names(sd)
        assert set(diffusers) & set(sd) == {"patch_embedding.weight", "patch_embedding.bias"}  # same in both
        diffusers["blocks.1.attn2.norm_added_q.weight"] = np.ones(128, np.float32)  # old Diffusers exports
        from_original = dit_params_from_state_dict(sd, cfg)
        from_diffusers = dit_params_from_state_dict(diffusers, cfg)
        assert from_diffusers.report.naming == "diffusers"
        assert list(from_diffusers.report.keys_ignored) == ["blocks.1.attn2.norm_added_q.weight"]
        assert_same_params(from_original.params, from_diffusers.params)
        forced = dit_params_from_state_dict(diffusers, cfg, naming="diffusers")
        assert_same_params(forced.params, from_diffusers.params)
    with pytest.raises(ConversionError, match=r"(?s)missing.*\n\s+time_embedding.0.weight.*left over.*"
                                              r"\n\s+condition_embedder.time_proj.weight.*check the naming"):
        dit_params_from_state_dict(ref.to_diffusers_names(t2v_state_dict), get_config("tiny"), naming="original")


def test_fun_control_with_image_branch_and_camera_matches_numpy_wan(tmp_path, fun_state_dict):
    """48 input channels + CLIP-image branch, from a bf16 .pth; the camera encoder stays at its
    (zero-output) init, so the model with camera rays is still exactly Wan."""
    bf16 = {k: v.astype(ml_dtypes.bfloat16) for k, v in fun_state_dict.items()}
    save_torch_state_dict(tmp_path / "fun.pth", bf16, wrap="state_dict", prefix="module.")
    cfg = get_config("tiny,fun_control,camera")
    converted = dit_params_from_state_dict(checkpoint_io.load_state_dict(tmp_path / "fun.pth"), cfg)
    left = converted.report.params_left_at_init
    assert sorted(left) and all(p.startswith("camera_encoder/") for p in left)
    assert "camera_encoder/proj_out/kernel" in left and "not Wan's" in converted.report.summary()
    assert len(left) + len(converted.report.params_filled) == len(jax.tree.leaves(converted.params))
    assert converted.params["params"]["patch_embedding"]["kernel"].shape == (1, 2, 2, 48, 128)

    x, t, text, clip = inputs(48, True)
    camera = np.random.default_rng(3).normal(size=(B, F, H * 4, W * 4, 24)).astype(np.float32)
    reference = reference_forward({k: v.astype(np.float32) for k, v in bf16.items()}, x, t, text, clip)
    assert_close(run_model(cfg, converted.params, x, t, text, clip=clip, camera=camera), reference, "fun-control")


def test_i2v_layout_with_image_branch_converts_and_matches_numpy_wan(i2v_state_dict):
    """Wan2.1-I2V: noise (16) + mask (4) + image latent (16) = 36 input channels, and the CLIP branch."""
    cfg = get_config("tiny,i2v")
    converted = dit_params_from_state_dict(i2v_state_dict, cfg)
    assert converted.report.params_left_at_init == {} and converted.report.keys_ignored == {}
    assert converted.params["params"]["patch_embedding"]["kernel"].shape == (1, 2, 2, 36, 128)
    x, t, text, clip = inputs(36, True)
    assert_close(run_model(cfg, converted.params, x, t, text, clip=clip),
                 reference_forward(i2v_state_dict, x, t, text, clip), "i2v")
    with pytest.raises(ConversionError, match=r"(?s)patch_embedding.weight: checkpoint has \(128, 36, 1, 2, 2\)"
                                              r".*36 = I2V"):
        dit_params_from_state_dict(i2v_state_dict, get_config("tiny,fun_control"))


def test_text_shorter_than_text_len_is_zero_padded_as_wan_does(t2v_state_dict):
    """Wan2.1 appends zero tokens up to text_len and does not mask them in cross-attention, so three
    text tokens must give the official result for those tokens padded to 8, not attention over three."""
    cfg = get_config("tiny")
    params = dit_params_from_state_dict(t2v_state_dict, cfg).params
    x, t, text, _ = inputs(16, False)
    short = text[:, :3]
    padded = reference_forward(t2v_state_dict, x, t, short, text_len=cfg.text_len)
    assert_close(run_model(cfg, params, x, t, short), padded, "3 text tokens padded to text_len")
    assert np.abs(reference_forward(t2v_state_dict, x, t, short) - padded).max() > 1e-2  # the padding matters
    with pytest.raises(ValueError, match=r"9 tokens, more than config.text_len=8"):
        run_model(cfg, params, x, t, np.concatenate([text, text[:, :1]], axis=1))


def test_every_problem_is_named_in_one_error(t2v_state_dict):
    sd = dict(t2v_state_dict)
    del sd["blocks.2.cross_attn.norm_k.weight"], sd["head.head.bias"]
    sd["blocks.0.self_attn.extra.weight"] = np.zeros((4, 4), np.float32)
    sd["time_projection.1.weight"] = sd["time_projection.1.weight"].T  # [dim, 6*dim] instead of [6*dim, dim]
    with pytest.raises(ConversionError) as error:
        dit_params_from_state_dict(sd, get_config("tiny"), source="broken.safetensors")
    message = str(error.value)
    for needle in ("broken.safetensors", "missing from the checkpoint (2)", "blocks.2.cross_attn.norm_k.weight",
                   "params/blocks/cross_attn/norm_k/scale[2]", "head.head.bias",
                   "left over in the checkpoint, used by no parameter (1)", "blocks.0.self_attn.extra.weight",
                   "time_projection.1.weight: checkpoint has (128, 768), expected (768, 128)"):
        assert needle in message, f"{needle!r} not in:\n{message}"


def test_t2v_checkpoint_with_fun_control_config_and_vice_versa_explain_themselves(t2v_state_dict, fun_state_dict):
    with pytest.raises(ConversionError, match=r"(?s)patch_embedding.weight: checkpoint has \(128, 48, 1, 2, 2\)"
                                              r".*CLIP-image branch.*fun_control"):
        dit_params_from_state_dict(fun_state_dict, get_config("tiny"))
    with pytest.raises(ConversionError, match=r"(?s)img_emb.proj.1.weight.*a T2V checkpoint"):
        dit_params_from_state_dict(t2v_state_dict, get_config("tiny,fun_control"))


def test_bfloat16_output_and_naming_detection_errors(t2v_state_dict):
    converted = dit_params_from_state_dict(t2v_state_dict, get_config("tiny"), dtype=ml_dtypes.bfloat16)
    kernel = converted.params["params"]["blocks"]["ffn_0"]["kernel"]
    assert kernel.dtype == ml_dtypes.bfloat16 and kernel.shape == (LAYERS, 128, 384)
    np.testing.assert_array_equal(kernel[3], t2v_state_dict["blocks.3.ffn.0.weight"].T.astype(ml_dtypes.bfloat16))
    with pytest.raises(ConversionError, match="neither of the original Wan names"):
        dit_params_from_state_dict({"foo.weight": np.zeros(2, np.float32)}, get_config("tiny"))


def test_cli_writes_an_orbax_checkpoint_that_restores_to_the_converted_params(tmp_path, t2v_state_dict):
    diffusers = ref.to_diffusers_names(t2v_state_dict)
    names = sorted(diffusers)
    shards = {"a.safetensors": names[: len(names) // 2], "b.safetensors": names[len(names) // 2:]}
    for shard, keys in shards.items():
        safetensors.numpy.save_file({k: diffusers[k] for k in keys}, str(tmp_path / shard))
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    (tmp_path / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"weight_map": weight_map}))
    out = tmp_path / "orbax"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, os.path.join(REPO, "launch", "convert_wan.py"),
                             f"--checkpoint={tmp_path}", f"--config={os.path.join(REPO, 'configs', 'dit.py')}:tiny",
                             f"--out={out}"], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for needle in (f"tensors read: {len(diffusers)}", "(diffusers naming)", "params left at init: none",
                   "verified: restored all"):
        assert needle in result.stdout, f"{needle!r} not in:\n{result.stdout}"
    restored = checkpoint_io.load_params_orbax(out)
    assert_same_params(restored, dit_params_from_state_dict(t2v_state_dict, get_config("tiny")).params)
    again = subprocess.run([sys.executable, os.path.join(REPO, "launch", "convert_wan.py"), f"--checkpoint={tmp_path}",
                            f"--config={os.path.join(REPO, 'configs', 'dit.py')}:tiny,fun_control", f"--out={out}2"],
                           capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert again.returncode == 1 and "error: converting" in again.stderr and "Traceback" not in again.stderr


@pytest.mark.parametrize("variant", ["", ",fun_control", ",i2v"])
def test_wan1_3b_expects_exactly_the_official_keys_and_shapes(variant):
    """At full size (shapes only, nothing allocated): the converter asks for Wan2.1-1.3B's keys and
    shapes as the official naming lists them, in both namings, and the T2V model has 1.419 B params."""
    cfg = get_config("wan1_3b" + variant)
    official = ref.original_shapes(dim=1536, ffn=8960, freq=256, text_dim=4096, in_dim=cfg.in_dim, out_dim=16,
                                   layers=30, clip_dim=1280 if cfg.image_branch else None)
    expected = expected_checkpoint_shapes(cfg, "original")
    assert expected == official
    assert expected_checkpoint_shapes(cfg, "diffusers") == ref.to_diffusers_names(official)
    if not variant:
        count = sum(int(np.prod(shape)) for shape in official.values())
        print(f"wan1_3b T2V parameters: {count:,}")
        assert abs(count / 1.419e9 - 1) < 1e-3
