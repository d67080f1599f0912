"""The Wan VAE converter against key lists written here by walking Wan's own module construction."""

import dataclasses
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import safetensors.numpy

from worldscape_jax.convert import checkpoint_io
from worldscape_jax.convert.state_dict import ConversionError
from worldscape_jax.convert.wan_vae import expected_checkpoint_shapes, vae_params_from_state_dict
from worldscape_jax.models.vae_config import VAEConfig, wan2_1

SMALL = VAEConfig(dim=4, dim_mult=(1, 2, 2), num_res_blocks=1, temporal_downsample=(False, True), z_dim=4,
                  latent_mean=(0.0,) * 4, latent_std=(1.0,) * 4)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def wan_keys(cfg: VAEConfig) -> list[tuple[str, str, tuple[int, ...]]]:
    """(original key, diffusers key, torch shape) for every tensor, following WanVAE_'s constructors."""
    out = []

    def conv(orig, diff, cout, cin, *k):
        out.append((f"{orig}.weight", f"{diff}.weight", (cout, cin, *k)))
        out.append((f"{orig}.bias", f"{diff}.bias", (cout,)))

    def residual(orig, diff, cin, cout):
        out.append((f"{orig}.residual.0.gamma", f"{diff}.norm1.gamma", (cin, 1, 1, 1)))
        conv(f"{orig}.residual.2", f"{diff}.conv1", cout, cin, 3, 3, 3)
        out.append((f"{orig}.residual.3.gamma", f"{diff}.norm2.gamma", (cout, 1, 1, 1)))
        conv(f"{orig}.residual.6", f"{diff}.conv2", cout, cout, 3, 3, 3)
        if cin != cout:
            conv(f"{orig}.shortcut", f"{diff}.conv_shortcut", cout, cin, 1, 1, 1)

    def middle(part, c):
        residual(f"{part}.middle.0", f"{part}.mid_block.resnets.0", c, c)
        out.append((f"{part}.middle.1.norm.gamma", f"{part}.mid_block.attentions.0.norm.gamma", (c, 1, 1)))
        conv(f"{part}.middle.1.to_qkv", f"{part}.mid_block.attentions.0.to_qkv", 3 * c, c, 1, 1)
        conv(f"{part}.middle.1.proj", f"{part}.mid_block.attentions.0.proj", c, c, 1, 1)
        residual(f"{part}.middle.2", f"{part}.mid_block.resnets.1", c, c)

    z, mult, last = cfg.z_dim, list(cfg.dim_mult), len(cfg.dim_mult) - 1
    dims = [cfg.dim * u for u in [1] + mult]
    conv("encoder.conv1", "encoder.conv_in", dims[0], 3, 3, 3, 3)
    index = 0
    for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
        for _ in range(cfg.num_res_blocks):
            residual(f"encoder.downsamples.{index}", f"encoder.down_blocks.{index}", cin, cout)
            cin, index = cout, index + 1
        if i != last:
            conv(f"encoder.downsamples.{index}.resample.1", f"encoder.down_blocks.{index}.resample.1", cout, cout, 3, 3)
            if cfg.temporal_downsample[i]:
                conv(f"encoder.downsamples.{index}.time_conv", f"encoder.down_blocks.{index}.time_conv",
                     cout, cout, 3, 1, 1)
            index += 1
    middle("encoder", dims[-1])
    out.append(("encoder.head.0.gamma", "encoder.norm_out.gamma", (dims[-1], 1, 1, 1)))
    conv("encoder.head.2", "encoder.conv_out", 2 * z, dims[-1], 3, 3, 3)
    conv("conv1", "quant_conv", 2 * z, 2 * z, 1, 1, 1)
    conv("conv2", "post_quant_conv", z, z, 1, 1, 1)

    dims = [cfg.dim * u for u in [mult[-1]] + mult[::-1]]
    temporal_up = cfg.temporal_downsample[::-1]
    conv("decoder.conv1", "decoder.conv_in", dims[0], z, 3, 3, 3)
    middle("decoder", dims[0])
    index = 0
    for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
        if i in (1, 2, 3):
            cin //= 2
        for j in range(cfg.num_res_blocks + 1):
            residual(f"decoder.upsamples.{index}", f"decoder.up_blocks.{i}.resnets.{j}", cin, cout)
            cin, index = cout, index + 1
        if i != last:
            up = f"decoder.up_blocks.{i}.upsamplers.0"
            conv(f"decoder.upsamples.{index}.resample.1", f"{up}.resample.1", cout // 2, cout, 3, 3)
            if temporal_up[i]:
                conv(f"decoder.upsamples.{index}.time_conv", f"{up}.time_conv", 2 * cout, cout, 3, 1, 1)
            index += 1
    out.append(("decoder.head.0.gamma", "decoder.norm_out.gamma", (dims[-1], 1, 1, 1)))
    conv("decoder.head.2", "decoder.conv_out", 3, dims[-1], 3, 3, 3)
    return out


def random_state_dict(cfg, naming="original", seed=0):
    rng = np.random.default_rng(seed)
    column = 0 if naming == "original" else 1
    return {entry[column]: rng.standard_normal(entry[2]).astype(np.float32) for entry in wan_keys(cfg)}


def test_original_names_fill_every_parameter_with_the_right_layout():
    sd = random_state_dict(SMALL)
    params, report = vae_params_from_state_dict(sd, SMALL, source="wan_vae.pth")
    assert report.tensors_read == len(sd) and report.naming == "original"
    assert len(report.params_filled) == len(jax.tree.leaves(params)) and report.params_left_at_init == {}
    assert report.parameter_count == sum(v.size for v in sd.values())
    assert "checkpoint: wan_vae.pth (original naming)" in report.summary()
    np.testing.assert_array_equal(params["encoder"]["conv1"]["kernel"],
                                  sd["encoder.conv1.weight"].transpose(2, 3, 4, 1, 0))
    # Decoder stage 0 has 2 residual blocks, so flat index 2 is its upsampler (temporal: reversed [False, True]).
    np.testing.assert_array_equal(params["decoder"]["upsamples_2"]["time_conv"]["kernel"][:, 0, 0],
                                  sd["decoder.upsamples.2.time_conv.weight"][:, :, :, 0, 0].transpose(2, 1, 0))
    np.testing.assert_array_equal(params["decoder"]["upsamples_2"]["resample"]["kernel"],
                                  sd["decoder.upsamples.2.resample.1.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params["encoder"]["middle_1"]["to_qkv"]["kernel"],
                                  sd["encoder.middle.1.to_qkv.weight"][:, :, 0, 0].T)
    np.testing.assert_array_equal(params["decoder"]["middle_1"]["norm"]["gamma"],
                                  sd["decoder.middle.1.norm.gamma"].reshape(-1))
    np.testing.assert_array_equal(params["quant_conv"]["kernel"][0, 0, 0], sd["conv1.weight"][:, :, 0, 0, 0].T)
    np.testing.assert_array_equal(params["post_quant_conv"]["bias"], sd["conv2.bias"])
    np.testing.assert_array_equal(params["decoder"]["head_norm"]["gamma"], sd["decoder.head.0.gamma"].reshape(-1))


def test_diffusers_names_give_the_same_params():
    original = vae_params_from_state_dict(random_state_dict(SMALL, "original"), SMALL).params
    diffusers = vae_params_from_state_dict(random_state_dict(SMALL, "diffusers"), SMALL)
    assert diffusers.report.naming == "diffusers"
    np.testing.assert_equal(original, diffusers.params)


def test_missing_left_over_and_misshaped_keys_are_all_named():
    sd = random_state_dict(SMALL)
    del sd["decoder.upsamples.4.residual.6.weight"], sd["encoder.middle.1.proj.bias"]
    sd["encoder.extra.weight"] = np.zeros(3, np.float32)
    sd["decoder.head.2.weight"] = np.zeros((3, 4, 3, 3, 1), np.float32)
    with pytest.raises(ConversionError) as error:
        vae_params_from_state_dict(sd, SMALL)
    message = str(error.value)
    for text in ("decoder.upsamples.4.residual.6.weight", "encoder.middle.1.proj.bias", "encoder.extra.weight",
                 "decoder.head.2.weight", "(3, 4, 3, 3, 1)", "(3, 4, 3, 3, 3)"):
        assert text in message


@pytest.mark.parametrize("naming", ["original", "diffusers"])
def test_wan2_1_checkpoint_keys_and_shapes_match_wans_construction(naming):
    column = 0 if naming == "original" else 1
    expected = {entry[column]: entry[2] for entry in wan_keys(wan2_1())}
    assert expected_checkpoint_shapes(wan2_1(), naming) == expected


def test_cli_takes_config_overrides_and_prints_the_report(tmp_path):
    """A VAE of another shape than the preset's, given by --config.model.* overrides as convert_wan.py takes them."""
    shape = dataclasses.replace(wan2_1(), dim=4, dim_mult=(1, 2, 2), num_res_blocks=1,
                                temporal_downsample=(False, True))
    sd = random_state_dict(shape, "diffusers")
    safetensors.numpy.save_file(sd, str(tmp_path / "vae.safetensors"))
    script, config = os.path.join(REPO, "launch", "convert_vae.py"), os.path.join(REPO, "configs", "vae.py")
    command = [sys.executable, script, f"--checkpoint={tmp_path / 'vae.safetensors'}", f"--config={config}:wan2_1"]
    overrides = ["--config.model.dim=4", "--config.model.dim_mult=(1,2,2)", "--config.model.num_res_blocks=1",
                 "--config.model.temporal_downsample=(False,True)"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([*command, f"--out={tmp_path / 'orbax'}", *overrides], capture_output=True, text=True,
                            env=env, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for needle in (f"tensors read: {len(sd)}", "(diffusers naming)", "params left at init: none"):
        assert needle in result.stdout, f"{needle!r} not in:\n{result.stdout}"
    restored = checkpoint_io.load_params_orbax(tmp_path / "orbax")
    np.testing.assert_equal(jax.tree.map(np.asarray, restored), vae_params_from_state_dict(sd, shape).params)
    preset_shape = subprocess.run([*command, f"--out={tmp_path / 'preset'}"], capture_output=True, text=True,
                                  env=env, cwd=REPO, timeout=300)
    assert preset_shape.returncode == 1 and "missing from the checkpoint" in preset_shape.stderr
