"""Grain pipeline: intrinsics follow resize/crop, stride sampling, sharding, shuffling, exact resume."""

from __future__ import annotations

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest

from worldscape_jax.data import clip_ops
from worldscape_jax.data.errors import DataFormatError
from worldscape_jax.data.pipeline import PipelineConfig, make_iterator
from worldscape_jax.data.sources import RealEstate10KSource
from worldscape_jax.data.formats import frames as frame_io


def rigid(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    q[:, 0] *= np.sign(np.linalg.det(q))
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = q, rng.normal(size=3)
    return pose


def tagged_clip(seed: int, frames: int = 12, height: int = 20, width: int = 30) -> dict:
    """Frame f of clip `seed` is the flat grey level 20 * seed + f, so a batch tells which frames it holds."""
    rng = np.random.default_rng(seed)
    levels = (20 * seed + np.arange(frames)).astype(np.uint8)
    return {
        "video": np.broadcast_to(levels[:, None, None, None], (frames, height, width, 3)).copy(),
        "depth": rng.uniform(1, 5, (frames, height, width)).astype(np.float32),
        "c2w": np.stack([rigid(rng) for _ in range(frames)]).astype(np.float32),
        "intrinsics": np.tile(np.float32([0.7, 1.0, 0.5, 0.5]), (frames, 1)),
        "scene_seed": np.int64(seed),
    }


def decode_levels(video: np.ndarray) -> np.ndarray:
    """[..., F, H, W, 3] in [-1, 1] -> the grey level of each frame [..., F]."""
    return np.rint((video[..., 0, 0, 0] + 1.0) * 127.5).astype(int)


SOURCE = [tagged_clip(seed) for seed in range(8)]


def config(**overrides) -> PipelineConfig:
    base = dict(batch_size=2, num_frames=4, height=16, width=16, frame_stride=2, process_index=0, process_count=1,
                read_threads=1, prefetch_batches=2)
    return PipelineConfig(**{**base, **overrides})


def blob_clip(height: int, width: int, intrinsics: np.ndarray, point_cam: np.ndarray, sigma: float = 2.5) -> dict:
    """One frame showing a Gaussian blob where the camera-frame point projects (pixel centres at i + 0.5)."""
    fx, fy, cx, cy = intrinsics * [width, height, width, height]
    u, v = fx * point_cam[0] / point_cam[2] + cx, fy * point_cam[1] / point_cam[2] + cy
    jj, ii = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    image = 255 * np.exp(-((ii - u) ** 2 + (jj - v) ** 2) / (2 * sigma**2))
    video = np.repeat(np.rint(image).astype(np.uint8)[None, ..., None], 3, axis=-1)
    return {"video": video, "c2w": np.eye(4, dtype=np.float32)[None], "intrinsics": intrinsics[None]}


@pytest.mark.parametrize("out_hw, crop_seed", [((32, 32), None), ((32, 32), 3), ((40, 24), 5), ((120, 100), 7),
                                               ((30, 60), None)])
def test_resize_crop_intrinsics_follow_a_projected_point(out_hw, crop_seed):
    intrinsics = np.float32([0.8, 1.0, 0.52, 0.47])
    point = np.array([0.1, -0.05, 2.0])
    clip = blob_clip(60, 90, intrinsics, point)
    rng = None if crop_seed is None else np.random.default_rng(crop_seed)
    out = clip_ops.resize_and_crop(clip, out_hw, rng)
    assert out["video"].shape == (1, *out_hw, 3)
    image = out["video"][0, ..., 0].astype(np.float64)
    jj, ii = np.meshgrid(np.arange(out_hw[0]) + 0.5, np.arange(out_hw[1]) + 0.5, indexing="ij")
    centroid = np.array([(ii * image).sum(), (jj * image).sum()]) / image.sum()
    fx, fy, cx, cy = out["intrinsics"][0] * [out_hw[1], out_hw[0], out_hw[1], out_hw[0]]
    projected = np.array([fx * point[0] / point[2] + cx, fy * point[1] / point[2] + cy])
    assert np.abs(centroid - projected).max() < 0.05  # measured < 0.01 px; a half-pixel convention slip is > 0.25


def test_depth_uses_nearest_values_only():
    clip = tagged_clip(1, frames=2)
    out = clip_ops.resize_and_crop(clip, (13, 17))
    assert out["depth"].shape == (2, 13, 17)
    assert np.isin(out["depth"], clip["depth"]).all()


def test_batches_have_fixed_shapes_ranges_and_relative_cameras():
    iterator = make_iterator(SOURCE, config(with_depth=True, random_crop=True))
    for _ in range(3):
        batch = next(iterator)
        assert set(batch) == {"video", "c2w", "intrinsics", "depth"}
        assert batch["video"].shape == (2, 4, 16, 16, 3) and batch["video"].dtype == np.float32
        assert batch["depth"].shape == (2, 4, 16, 16) and batch["c2w"].shape == (2, 4, 4, 4)
        assert batch["video"].min() >= -1.0 and batch["video"].max() <= 1.0
        for b in range(2):
            levels = decode_levels(batch["video"][b])
            seed, frames = levels[0] // 20, levels % 20
            np.testing.assert_array_equal(np.diff(frames), 2)  # stride 2, consecutive
            source_c2w = SOURCE[seed]["c2w"][frames].astype(np.float64)
            expected = np.linalg.inv(source_c2w[0]) @ source_c2w  # naive inverse, independent of the pipeline
            np.testing.assert_allclose(batch["c2w"][b], expected, atol=1e-5)


def test_every_start_is_reachable_and_none_overruns():
    iterator = make_iterator(SOURCE, config(batch_size=4, num_frames=3, frame_stride=3))
    starts = {int(decode_levels(next(iterator)["video"])[b, 0] % 20) for _ in range(20) for b in range(4)}
    assert starts == set(range(12 - 2 * 3))  # 12 frames, span 7: starts 0..5


def epoch_seeds(**overrides) -> list[int]:
    iterator = make_iterator(SOURCE, config(batch_size=1, num_epochs=1, **overrides))
    return [int(decode_levels(batch["video"])[0, 0] // 20) for batch in iterator]


def test_shuffle_is_a_permutation_fixed_by_the_seed():
    first = epoch_seeds(seed=1)
    assert sorted(first) == list(range(8))
    assert epoch_seeds(seed=1) == first
    assert epoch_seeds(seed=2) != first
    assert epoch_seeds(shuffle=False) == list(range(8))


def test_process_shards_are_disjoint_and_cover_the_source():
    shards = [epoch_seeds(process_index=i, process_count=3) for i in range(3)]
    assert sorted(sum(shards, [])) == list(range(8))
    assert [len(s) for s in shards] == [3, 3, 2]


def assert_batches_equal(first: list[dict], second: list[dict]) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_resume_from_state_gives_identical_batches():
    cfg = config(random_crop=True, with_depth=True, seed=4, batch_size=3)
    iterator = make_iterator(SOURCE, cfg)
    for _ in range(5):  # past the first epoch (8 clips / 3 per batch)
        next(iterator)
    state = iterator.get_state()
    expected = [next(iterator) for _ in range(3)]
    restored = make_iterator(SOURCE, cfg)
    restored.set_state(state)
    assert_batches_equal([next(restored) for _ in range(3)], expected)


def test_orbax_checkpoint_of_the_iterator(tmp_path):
    cfg = config(random_crop=True, seed=9)
    iterator = make_iterator(SOURCE, cfg)
    for _ in range(3):
        next(iterator)
    handlers = {"data_iter": grain.checkpoint.CheckpointHandler()}
    with ocp.CheckpointManager(tmp_path / "ckpt", item_names=("data_iter",), item_handlers=handlers) as manager:
        manager.save(3, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointSave(iterator)))
        manager.wait_until_finished()
    expected = [next(iterator) for _ in range(2)]
    fresh = make_iterator(SOURCE, cfg)
    with ocp.CheckpointManager(tmp_path / "ckpt", item_names=("data_iter",), item_handlers=handlers) as manager:
        manager.restore(3, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointRestore(fresh)))
    assert_batches_equal([next(fresh) for _ in range(2)], expected)


def test_missing_requested_key_and_short_clip_are_errors():
    with pytest.raises(DataFormatError, match="key 'pose_video'.*asks for this key"):
        next(make_iterator(SOURCE, config(with_pose_video=True)))
    with pytest.raises(DataFormatError, match=r"12 frames; 5 frames at stride 3 need at least 13"):
        next(make_iterator(SOURCE, config(num_frames=5, frame_stride=3)))


def write_realestate_clip(folder, name: str, frames: int) -> None:
    rng = np.random.default_rng(frames)
    lines = ["https://www.youtube.com/watch?v=x"]
    for f in range(frames):
        w2c = np.linalg.inv(rigid(rng))
        lines.append(" ".join([str(1000 * f), "0.6", "1.0", "0.5", "0.5", "0", "0"]
                              + [f"{v:.9f}" for v in w2c[:3].reshape(-1)]))
    (folder / "poses").mkdir(exist_ok=True)
    (folder / "poses" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    (folder / "videos").mkdir(exist_ok=True)
    video = np.broadcast_to((10 * np.arange(frames, dtype=np.uint8))[:, None, None, None], (frames, 18, 32, 3))
    frame_io.write_mp4(folder / "videos" / f"{name}.mp4", np.ascontiguousarray(video))


def test_realestate10k_source_through_the_pipeline(tmp_path):
    write_realestate_clip(tmp_path, "a", 6)
    write_realestate_clip(tmp_path, "b", 7)
    source = RealEstate10KSource.from_folders(tmp_path / "poses", tmp_path / "videos")
    batch = next(make_iterator(source, config(batch_size=2, num_frames=3, frame_stride=2, height=8, width=8)))
    assert batch["video"].shape == (2, 3, 8, 8, 3)
    np.testing.assert_array_equal(np.diff(decode_levels(batch["video"]), axis=1), 20)  # stride 2 x level step 10
    np.testing.assert_allclose(batch["c2w"][:, 0], np.broadcast_to(np.eye(4), (2, 4, 4)), atol=1e-5)
    # 18x32 -> cover 8x8 is 8x15, centre crop from column 3: fx = 0.6 * 15 / 8, cx = (0.5 * 15 - 3) / 8
    np.testing.assert_allclose(batch["intrinsics"][0, 0], [0.6 * 15 / 8, 1.0, (0.5 * 15 - 3) / 8, 0.5], atol=1e-6)


def test_synthworld_source_on_the_fly_is_deterministic():
    from worldscape_jax.data.sources import SynthWorldSource
    from worldscape_jax.data.synthworld import generate_clip

    source = SynthWorldSource([3, 4, 5], num_frames=5, height=12, width=12)
    cfg = config(batch_size=2, num_frames=3, frame_stride=2, height=12, width=12, with_depth=True,
                 random_start=False, shuffle=False)
    first, second = next(make_iterator(source, cfg)), next(make_iterator(source, cfg))
    assert_batches_equal([first], [second])
    clip = generate_clip(3, 5, 12, 12, traj_seed=3)  # item 0 of the unshuffled source, frames 0, 2, 4
    c2w = clip["c2w"][[0, 2, 4]].astype(np.float64)
    np.testing.assert_allclose(first["c2w"][0], np.linalg.inv(c2w[0]) @ c2w, atol=1e-5)
    np.testing.assert_allclose(first["video"][0], clip["video"][[0, 2, 4]] / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_array_equal(first["depth"][0], clip["depth"][[0, 2, 4]])
