"""Fuzz the pose-text readers (RealEstate10K, TartanAir): hostile numbers, strange line breaks, non-rigid poses."""

from __future__ import annotations

import numpy as np
import pytest
from harness import Case, Target, mutated_text
from mutators import LINE_BREAKS

from worldscape_jax.data.formats import realestate10k as re10k
from worldscape_jax.data.formats import tartanair

URL = "https://www.youtube.com/watch?v=fuzz"
# Tokens that must never parse as a number, and where in a line they go.
BAD_TOKENS = ("1e39", "-1e39", "nan", "inf", "+5", "1_000", "٣", "１", "0x10", "1e", "--1", "5e-324x")


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def random_c2w(rng: np.random.Generator, count: int) -> np.ndarray:
    poses = np.tile(np.eye(4), (count, 1, 1))
    for pose in poses:
        pose[:3, :3] = random_rotation(rng)
        pose[:3, 3] = rng.normal(size=3)
    return poses


def check_poses(c2w: np.ndarray) -> str | None:
    """None when every pose is finite and rigid (float32 tolerance), else what is wrong."""
    c2w = np.asarray(c2w, np.float64)
    if not np.all(np.isfinite(c2w)):
        return "a pose has NaN or inf"
    if np.abs(c2w[:, 3] - [0, 0, 0, 1]).max() > 0:
        return "a pose's bottom row is not [0 0 0 1]"
    rotation = c2w[:, :3, :3]
    if np.abs(np.swapaxes(rotation, 1, 2) @ rotation - np.eye(3)).max() > 3e-3:
        return "a rotation is not orthonormal"
    if np.abs(np.linalg.det(rotation) - 1).max() > 1e-2:
        return "a rotation has det != 1"
    return None


# ---- RealEstate10K ----------------------------------------------------------------------------------

def re10k_text(rng: np.random.Generator, count: int = 3) -> str:
    intrinsics = np.concatenate([rng.uniform(0.3, 1.5, (count, 2)), rng.uniform(0.2, 0.8, (count, 2))], 1)
    timestamps = np.cumsum(rng.integers(1, 10**5, count))
    return re10k.format_pose_text(URL, timestamps, intrinsics, random_c2w(rng, count))


def re10k_injection(text: str, rng: np.random.Generator) -> tuple[str, str, int]:
    """(text, label, line number) with one thing wrong by construction on a pose line."""
    lines = text.rstrip("\n").split("\n")
    row = int(rng.integers(1, len(lines)))
    tokens = lines[row].split(" ")
    kind = int(rng.integers(6))
    if kind == 0:
        column = int(rng.integers(len(tokens)))
        tokens[column] = BAD_TOKENS[rng.integers(len(BAD_TOKENS))]
        label = f"bad token {tokens[column]!r} in field {column + 1}"
    elif kind == 1:
        tokens[int(rng.integers(1, 3))] = ("1e39", "1e-320", "0", "-0.5", "1e-5")[rng.integers(5)]
        label = f"focal length {tokens[1]} {tokens[2]}"
    elif kind == 2:
        tokens[int(rng.integers(3, 5))] = ("-0.25", "1.5", "1e30")[rng.integers(3)]
        label = f"principal point {tokens[3]} {tokens[4]}"
    elif kind == 3:
        rotation = np.asarray(tokens[7:], float).reshape(3, 4)[:, :3]
        warp = (np.diag([1.1, 1, 1]), np.diag([-1.0, 1, 1]), np.array([[1, 0.2, 0], [0, 1, 0], [0, 0, 1]]))
        rotation = warp[rng.integers(3)] @ rotation
        matrix = np.asarray(tokens[7:], float).reshape(3, 4)
        matrix[:, :3] = rotation
        tokens[7:] = [f"{v:.9g}" for v in matrix.reshape(-1)]
        label = "non-rigid rotation"
    elif kind == 4:
        position = int(rng.integers(1, len(lines[row])))
        brk = LINE_BREAKS[rng.integers(len(LINE_BREAKS) - 2)]  # not '\r' / '\r\n' (a real line ending)
        lines[row] = lines[row][:position] + brk + lines[row][position:]
        return "\n".join(lines) + "\n", f"line break {brk!r} inside a line", row + 1
    else:
        tokens[0] = ("١٠", "+5", "1_000", "1.5", "9" * 25)[rng.integers(5)]
        label = f"timestamp {tokens[0]!r}"
    lines[row] = " ".join(tokens)
    return "\n".join(lines) + "\n", label, row + 1


def re10k_cases(tmp_path):
    def cases(rng, count):
        for index in range(count):
            text = re10k_text(rng, int(rng.integers(1, 5)))
            path = tmp_path / f"re10k_{index}.txt"
            kind = index % 3
            if kind == 0:
                yield Case((path, text), "valid", names=path.name, valid=True)
            elif kind == 1:
                text, label, line = re10k_injection(text, rng)
                yield Case((path, text), label, names=(path.name, f"line {line}"), wrong=True)
            else:
                yield mutated_text(path, text, rng)
    return cases


def from_file(read):
    """A target's run for a text reader: writes the case's text to its path (as UTF-8), then reads that file."""
    def run(data):
        path, text = data
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        return read(path)
    return run


def check_re10k(poses: re10k.RealEstate10KPoses) -> str | None:
    k = np.asarray(poses.intrinsics, np.float64)
    if not (np.all(np.isfinite(k)) and np.all(k[:, :2] >= 1e-3) and np.all((k[:, 2:] >= 0) & (k[:, 2:] <= 1))):
        return f"intrinsics out of range {k.tolist()}"
    return check_poses(poses.c2w)


def test_fuzz_realestate10k_pose_text(fuzz, tmp_path):
    fuzz(Target("re10k_pose_text", re10k_cases(tmp_path), from_file(re10k.read_pose_file), check_re10k), ci=240, long=4000)


# ---- TartanAir ----------------------------------------------------------------------------------

def tartanair_text(rng: np.random.Generator, count: int = 3) -> str:
    quaternions = rng.normal(size=(count, 4))
    quaternions /= np.linalg.norm(quaternions, axis=1, keepdims=True)
    rows = np.concatenate([rng.normal(size=(count, 3)), quaternions], 1)
    return "".join(" ".join(f"{v:.9g}" for v in row) + "\n" for row in rows)


def tartanair_cases(tmp_path):
    def cases(rng, count):
        for index in range(count):
            text = tartanair_text(rng, int(rng.integers(1, 5)))
            path = tmp_path / f"pose_{index}.txt"
            lines = text.rstrip("\n").split("\n")
            row = int(rng.integers(len(lines)))
            tokens = lines[row].split(" ")
            kind = index % 3
            if kind == 0:
                yield Case((path, text), "valid", names=path.name, valid=True)
            elif kind == 1:
                column = int(rng.integers(7))
                tokens[column] = (*BAD_TOKENS, "2")[rng.integers(len(BAD_TOKENS) + 1)] if column < 3 else (
                    ("2", "-3", "1e39", "nan", "٣")[rng.integers(5)])
                lines[row] = " ".join(tokens)
                yield Case((path, "\n".join(lines)), f"field {column + 1} = {tokens[column]!r}",
                           names=(path.name, f"line {row + 1}"), wrong=not (column < 3 and tokens[column] == "2"))
            else:
                yield mutated_text(path, text, rng)
    return cases


def test_fuzz_tartanair_pose_text(fuzz, tmp_path):
    fuzz(Target("tartanair_pose_text", tartanair_cases(tmp_path), from_file(tartanair.read_poses), check_poses),
         ci=240, long=4000)


@pytest.mark.parametrize("brk", LINE_BREAKS[:-2])
def test_line_numbers_count_newlines_only(tmp_path, brk):
    """A character str.splitlines would break on does not shift the line number of a later error."""
    rng = np.random.default_rng(0)
    lines = re10k_text(rng, 3).rstrip("\n").split("\n")
    lines[1] = lines[1].replace(" ", f" {brk}", 1)  # line 2 is broken by the stray character
    path = tmp_path / "clip.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(re10k.DataFormatError, match=r"clip\.txt, line 2: "):
        re10k.read_pose_file(path)
