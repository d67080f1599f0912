"""Fuzz the dataset containers: EgoDex hdf5 episodes and the SynthWorld ArrayRecord export."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from harness import Case, Target, mutated_file
from test_fuzz_poses import check_poses, random_c2w

from worldscape_jax.data.formats import egodex

FRAMES = 2
K = np.array([[40.0, 0, 30.0], [0, 42.0, 25.0], [0, 0, 1]])
JOINTS = [name for side in egodex.SIDES for name in egodex.openpose_joint_names(side)]


def write_episode(path: Path, rng: np.random.Generator, change=None) -> Path:
    """A tiny EgoDex episode (2 frames, the 42 joints the reader needs); `change(file)` edits it before closing."""
    c2w = random_c2w(rng, FRAMES)
    with h5py.File(path, "w") as file:
        file["camera/intrinsic"] = K
        file["transforms/camera"] = c2w
        joints = np.tile(np.eye(4), (FRAMES, 1, 1))
        joints[:, :3, 3] = rng.normal(size=3) + [0, 0, 3]
        for name in JOINTS:
            file[f"transforms/{name}"] = joints
            file[f"confidences/{name}"] = rng.uniform(0, 1, FRAMES)
        file.attrs["llm_description"] = "pick up the cube"
        if change is not None:
            change(file)
    return path


def replace(key: str, value, **kwargs):
    def change(file):
        del file[key]
        file.create_dataset(key, data=value, **kwargs)
    return change


def egodex_injections(rng: np.random.Generator):
    """(label, change) pairs that make an episode wrong by construction."""
    camera = random_c2w(rng, FRAMES)
    warps = {"scaled": np.diag([1.2, 1, 1, 1]), "reflected": np.diag([-1.0, 1, 1, 1]),
             "sheared": np.array([[1, 0.3, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])}
    name = list(warps)[rng.integers(len(warps))]
    bottom = camera.copy()
    bottom[:, 3, :3] = 0.5
    joint = JOINTS[rng.integers(len(JOINTS))]
    infinite = camera.copy()
    infinite[:, 0, 3] = np.inf
    k_negative = K.copy()
    k_negative[0, 2] = -5.0
    string_dtype = h5py.string_dtype()
    compound = np.zeros(FRAMES, dtype=[("a", "f4"), ("b", "f4")])
    vlen = h5py.vlen_dtype(np.float32)

    def vlen_confidences(file):
        del file[f"confidences/{joint}"]
        data = file.create_dataset(f"confidences/{joint}", (FRAMES,), dtype=vlen)
        for i in range(FRAMES):
            data[i] = np.ones(i + 1, np.float32)

    def text_array(file):
        file.attrs["llm_description"] = np.arange(3)

    def huge_sparse(file):
        del file["transforms/camera"]
        file.create_dataset("transforms/camera", shape=(10**8, 4, 4), dtype="f8", chunks=(1, 4, 4))

    camera_key, joint_key, confidence_key = "transforms/camera", f"transforms/{joint}", f"confidences/{joint}"
    return [  # (label, change, the dataset or attribute the error must name)
        (f"{name} camera", replace(camera_key, warps[name] @ camera), camera_key),
        ("camera bottom row", replace(camera_key, bottom), camera_key),
        (f"{name} joint", replace(joint_key, warps[name] @ np.tile(np.eye(4), (FRAMES, 1, 1))), joint_key),
        ("NaN confidence", replace(confidence_key, np.array([np.nan] * FRAMES)), confidence_key),
        ("confidence 1.5", replace(confidence_key, np.full(FRAMES, 1.5)), confidence_key),
        ("negative cx", replace("camera/intrinsic", k_negative), "camera/intrinsic"),
        ("description is an array", text_array, "llm_description"),
        ("string dataset", replace("camera/intrinsic", np.array(["a", "b", "c"], dtype=object), dtype=string_dtype),
         "camera/intrinsic"),
        ("compound confidences", replace(confidence_key, compound), confidence_key),
        ("vlen confidences", vlen_confidences, confidence_key),
        ("zero frames", lambda file: [replace(f"transforms/{key}", np.zeros((0, 4, 4)))(file)
                                      for key in ["camera", *JOINTS]], camera_key),
        ("sparse (1e8, 4, 4) camera", huge_sparse, camera_key),
        ("missing joint", lambda file: file.__delitem__(joint_key), joint_key),
        ("inf camera", replace(camera_key, infinite), camera_key),
    ]


def egodex_cases(tmp_path):
    def cases(rng, count):
        valid = write_episode(tmp_path / "template.hdf5", np.random.default_rng(0)).read_bytes()
        for index in range(count):
            path = tmp_path / f"episode_{index}.hdf5"
            if index % 3 == 0:
                yield Case(write_episode(path, rng), "valid", names=path.name, valid=True)
            elif index % 3 == 1:
                injections = egodex_injections(rng)
                label, change, key = injections[rng.integers(len(injections))]
                yield Case(write_episode(path, rng, change), label, names=(path.name, key), wrong=True)
            else:
                yield mutated_file(path, valid, rng)
    return cases


def check_episode(episode: dict) -> str | None:
    problem = check_poses(episode["c2w"])
    if problem:
        return problem
    confidences = episode["hand_confidences"]
    if not np.all((confidences >= 0) & (confidences <= 1)):
        return "a confidence outside [0, 1]"
    k = episode["intrinsics"]
    if not (np.all(np.isfinite(k)) and np.all(k[:, :2] > 0) and np.all((k[:, 2:] >= 0) & (k[:, 2:] <= 1))):
        return f"intrinsics {k[0].tolist()}"
    if not isinstance(episode["text"], str):
        return f"text of type {type(episode['text']).__name__}"
    return None


def read_episode(path):
    return egodex.read_episode(path, image_hw=(48, 64))


def test_fuzz_egodex_hdf5(fuzz, tmp_path):
    fuzz(Target("egodex_hdf5", egodex_cases(tmp_path), read_episode, check_episode), ci=90, long=1500)


# ---- SynthWorld ArrayRecord export ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthworld_export(tmp_path_factory) -> Path:
    from worldscape_jax.data.tfds_builder import build_synthworld, make_config

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
    from test_tfds_builder import fake_clip

    return Path(build_synthworld(tmp_path_factory.mktemp("export"), make_config("navigation", 6, 2, 4, 4),
                                 generate=fake_clip, split_fn=lambda seed: "train"))


def array_record_cases(tmp_path, export: Path):
    shard = next(export.glob("*array_record*"))
    valid = shard.read_bytes()

    def cases(rng, count):
        for index in range(count):
            folder = tmp_path / f"export_{index}"
            shutil.copytree(export, folder)
            target = folder / shard.name
            if index % 3 == 0:
                yield Case(folder, "valid", names=shard.name, valid=True)
            elif index % 3 == 1:
                cut = int(rng.integers(len(valid)))
                target.write_bytes(valid[:cut])
                yield Case(folder, f"cut at {cut} of {len(valid)} bytes", names=shard.name, wrong=True)
            else:
                yield mutated_file(target, valid, rng, data_for=folder)
    return cases


def read_every_clip(folder: Path) -> list[dict]:
    from worldscape_jax.data.tfds_builder import synthworld_array_record_source

    source = synthworld_array_record_source(folder, "train")
    return [source[i] for i in range(len(source))]


def check_clips(clips: list[dict]) -> str | None:
    """Every clip must be exactly the one written (the generator is a function of the seed)."""
    from test_tfds_builder import fake_clip

    if sorted(int(clip["scene_seed"]) for clip in clips) != list(range(6)):
        return f"read {len(clips)} clips, not the 6 written"
    for clip in clips:
        expected = fake_clip(int(clip["scene_seed"]), 2, 4, 4, "navigation")
        if any(not np.array_equal(clip[key], value) for key, value in expected.items()):
            return f"clip {int(clip['scene_seed'])} differs from what was written"
    return None


def test_fuzz_array_record(fuzz, tmp_path, synthworld_export):
    fuzz(Target("array_record", array_record_cases(tmp_path, synthworld_export), read_every_clip, check_clips),
         ci=45, long=600)


def test_damaged_record_names_the_file_and_the_record(tmp_path, synthworld_export):
    """A flipped bit inside a record (the footer intact) fails when that item is read, naming shard and record."""
    from worldscape_jax.data.errors import DataFormatError
    from worldscape_jax.data.tfds_builder import synthworld_array_record_source

    shard = next(synthworld_export.glob("*array_record*"))
    valid = shard.read_bytes()
    for position in range(64, len(valid) // 2, 97):
        folder = tmp_path / f"flip_{position}"
        shutil.copytree(synthworld_export, folder)
        (folder / shard.name).write_bytes(valid[:position] + bytes([valid[position] ^ 0x10]) + valid[position + 1:])
        try:
            source = synthworld_array_record_source(folder, "train")
        except DataFormatError:
            continue  # this flip hit the index: refused when opened (the fuzz target covers that)
        assert len(source) == 6
        try:
            for index in range(len(source)):
                source[index]
        except DataFormatError as error:
            assert re.search(rf"{shard.name}: record \d+ \(item \d+\) cannot be read", str(error)), str(error)
            return
    pytest.fail("no flipped bit left the file openable and a record unreadable")
