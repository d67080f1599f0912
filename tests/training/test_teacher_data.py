"""The teacher reads its clips through the Grain pipeline from real-data formats: a RealEstate10K folder
(frames + pose text) trains end to end, the way a user with real data starts."""

import os

import jax
import numpy as np
from PIL import Image

from worldscape_jax.configs import teacher as teacher_config
from worldscape_jax.configs import vae as vae_configs
from worldscape_jax.data.formats.realestate10k import format_pose_text
from worldscape_jax.geometry.cameras import relative_to_first
from worldscape_jax.inference.loading import load_vae
from worldscape_jax.models import vae as vae_lib
from worldscape_jax.models.vae_config import get_vae_config
from worldscape_jax.training.export import export_params
from worldscape_jax.training.logging import read_jsonl
from worldscape_jax.training.loop import train
from worldscape_jax.training.stages import teacher

CLIPS, FRAMES = 3, 6


def _walk(clip: int) -> np.ndarray:
    """A camera that turns a little and moves forward, from a different place for each clip."""
    c2w = np.tile(np.eye(4), (FRAMES, 1, 1))
    for i in range(FRAMES):
        angle = 0.03 * i * (clip + 1)
        c2w[i, :3, :3] = [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
        c2w[i, :3, 3] = [clip, 0.0, 0.1 * i]
    return c2w


def write_realestate10k_folder(root) -> list[np.ndarray]:
    """<clip>.txt pose files beside <clip>/ folders of 24x40 PNG frames (another aspect than the training
    size, so the pipeline resizes and crops); returns each clip's c2w."""
    rng = np.random.default_rng(0)
    paths = []
    for clip in range(CLIPS):
        name, c2w = f"clip{clip}", _walk(clip)
        intrinsics = np.tile([0.9, 1.5, 0.5, 0.5], (FRAMES, 1))
        (root / f"{name}.txt").write_text(format_pose_text("https://example.com/x", 33_366 * np.arange(FRAMES),
                                                           intrinsics, c2w))
        (root / name).mkdir()
        for i in range(FRAMES):
            Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(root / name / f"{i:04d}.png")
        paths.append(c2w)
    return paths


def test_teacher_trains_from_a_realestate10k_folder(tmp_path, capsys):
    data = tmp_path / "re10k"
    data.mkdir()
    poses = write_realestate10k_folder(data)
    config = teacher_config.get_config("tiny,no_turn_warp")  # the warp's path is tested in test_teacher.py
    vae_dir = str(tmp_path / "vae")
    export_params(vae_lib.init_params(get_vae_config("tiny"), jax.random.key(0)), vae_dir,
                  vae_configs.get_config("tiny"))
    config.vae.checkpoint = vae_dir
    config.data.update(source="realestate10k", path=str(data), frames=5, height=32, width=32, num_clips=0,
                       cache_dir=str(tmp_path / "cache"))
    config.model.num_layers = 1
    config.update(global_batch=2, total_steps=3)
    config.checkpoint.every_steps = 0
    config.log.update(every_steps=1, tensorboard=False, progress=False)
    workdir = str(tmp_path / "run")
    state = train(config, workdir)
    out = capsys.readouterr().out
    assert "--config.optim.warmup_steps" in out  # 3 steps cannot warm up over 100: capped, and said
    assert teacher.latent_cache_dir(config, load_vae(vae_dir)) in out  # where the cache goes is printed
    records = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    assert [r["step"] for r in records] == [1, 2, 3] and int(state.step) == 3
    assert all(np.isfinite(r["fm_loss"]) for r in records)
    cache = teacher.build_latent_cache(config)
    assert len(cache) == CLIPS and cache[0]["latents"].shape == (2, 8, 8, 16)
    for clip in range(CLIPS):  # the pipeline's first 5 frames, poses relative to the first
        np.testing.assert_allclose(cache[clip]["c2w"], relative_to_first(poses[clip][:5]), atol=1e-5)
