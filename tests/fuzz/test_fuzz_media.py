"""Fuzz the binary data readers: depth .npy, images, mp4 video."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import imageio_ffmpeg
import numpy as np
import pytest
from harness import Case, Target, mutated_file
from PIL import Image

from worldscape_jax.data.errors import DataFormatError
from worldscape_jax.data.formats import frames as frame_io
from worldscape_jax.data.formats import tartanair


def write_case(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ---- depth .npy -------------------------------------------------------------------------------------

def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def huge_header(shape: tuple[int, ...]) -> bytes:
    """A .npy of float32 that declares `shape` but holds 16 bytes of data."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}".ljust(117) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + bytes(16)


def depth_injection(rng: np.random.Generator, depth: np.ndarray) -> tuple[bytes, str]:
    """A depth file that is wrong by construction."""
    kind = int(rng.integers(9))
    if kind < 4:
        bad = depth.copy()
        bad[rng.integers(depth.shape[0]), rng.integers(depth.shape[1])] = (np.nan, np.inf, -1.0, 0.0)[kind]
        return npy_bytes(bad), f"depth value {(np.nan, np.inf, -1.0, 0.0)[kind]}"
    if kind == 4:
        return npy_bytes(np.full_like(depth, 1e38)), "depth 1e38"
    if kind == 5:
        buffer = io.BytesIO()
        np.savez(buffer, depth=depth)
        return buffer.getvalue(), "an .npz under a .npy name"
    if kind == 6:
        return huge_header((100000, 100000)), "header declares (100000, 100000)"
    if kind == 7:
        return b"", "empty file"
    return npy_bytes(depth.astype(np.int32)), "integer depth"


def depth_cases(tmp_path):
    def cases(rng, count):
        for index in range(count):
            depth = rng.uniform(0.5, 50.0, (int(rng.integers(1, 6)), int(rng.integers(1, 6)))).astype(np.float32)
            name = f"depth_{index}.npy"
            if index % 3 == 0:
                yield Case(write_case(tmp_path, name, npy_bytes(depth)), "valid", names=name, valid=True)
            elif index % 3 == 1:
                data, label = depth_injection(rng, depth)
                yield Case(write_case(tmp_path, name, data), label, names=name, wrong=True)
            else:
                yield mutated_file(tmp_path / name, npy_bytes(depth), rng)
    return cases


def check_depth(depth: np.ndarray) -> str | None:
    if depth.ndim != 2 or depth.dtype != np.float32:
        return f"depth of shape {depth.shape} {depth.dtype}"
    if not np.all(np.isfinite(depth) & (depth > 0) & (depth <= tartanair.MAX_DEPTH_M)):
        return "a depth is not finite and positive"
    return None


def test_fuzz_depth_npy(fuzz, tmp_path):
    fuzz(Target("depth_npy", depth_cases(tmp_path), tartanair.read_depth, check_depth), ci=240, long=4000)


# ---- images -----------------------------------------------------------------------------------------

def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height (a decompression bomb's first bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    idat = b"IDAT" + zlib.compress(b"\x00" * 16)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
            + struct.pack(">I", len(idat) - 4) + idat + struct.pack(">I", zlib.crc32(idat))
            + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND")))


def image_cases(tmp_path):
    def cases(rng, count):
        for index in range(count):
            image = rng.integers(0, 256, (int(rng.integers(1, 9)), int(rng.integers(1, 9)), 3), dtype=np.uint8)
            name = f"frame_{index}.png"
            if index % 3 == 0:
                yield Case(write_case(tmp_path, name, png_bytes(image)), "valid", names=name, valid=True)
            elif index % 3 == 1:
                width, height = ((20000, 20000), (100000, 1), (0, 5), (2**31 - 1, 2**31 - 1))[rng.integers(4)]
                yield Case(write_case(tmp_path, name, png_declaring(width, height)), f"PNG declaring {width}x{height}",
                           names=name, wrong=True)
            else:
                yield mutated_file(tmp_path / name, png_bytes(image), rng)
    return cases


def check_image(image: np.ndarray) -> str | None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        return f"image of shape {image.shape} {image.dtype}"
    return None


def test_fuzz_images(fuzz, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        fuzz(Target("image_png", image_cases(tmp_path), frame_io.read_image, check_image), ci=240, long=4000)


# ---- mp4 video --------------------------------------------------------------------------------------

VIDEO_FRAMES = 12


def faststart_mp4(path, frames: np.ndarray, fps: float = 10.0) -> bytes:
    """H.264 with the index (moov) first, as streamed files are: a cut file still decodes its first frames."""
    writer = imageio_ffmpeg.write_frames(str(path), frames.shape[2:0:-1], fps=fps, macro_block_size=1,
                                         codec="libx264rgb", pix_fmt_out="rgb24", quality=None,
                                         output_params=["-qp", "0", "-movflags", "+faststart"])
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path.read_bytes()


@pytest.fixture(scope="module")
def valid_mp4(tmp_path_factory) -> bytes:
    frames = np.random.default_rng(0).integers(0, 256, (VIDEO_FRAMES, 16, 24, 3), dtype=np.uint8)
    return faststart_mp4(tmp_path_factory.mktemp("video") / "valid.mp4", frames)


def video_cases(tmp_path, valid: bytes):
    def cases(rng, count):
        for index in range(count):
            name = f"video_{index}.mp4"
            if index % 3 == 0:
                yield Case(write_case(tmp_path, name, valid), "valid", names=name, valid=True)
            elif index % 3 == 1:
                cut = int(len(valid) * rng.uniform(0.1, 0.75))
                yield Case(write_case(tmp_path, name, valid[:cut]), f"cut at {cut} of {len(valid)} bytes",
                           names=name, wrong=True)
            else:
                yield mutated_file(tmp_path / name, valid, rng)
    return cases


def read_video(path) -> np.ndarray:
    return frame_io.read_mp4(path)[0]


def check_video(video: np.ndarray) -> str | None:
    if video.shape != (VIDEO_FRAMES, 16, 24, 3):
        return f"video of shape {video.shape}; the file holds {VIDEO_FRAMES} frames of 16x24"
    return None


def test_fuzz_mp4(fuzz, tmp_path, valid_mp4):
    fuzz(Target("video_mp4", video_cases(tmp_path, valid_mp4), read_video, check_video), ci=24, long=300,
         time_limit=30.0)


def test_truncated_video_warns_when_partial_reads_are_allowed(tmp_path, valid_mp4):
    path = write_case(tmp_path, "cut.mp4", valid_mp4[:len(valid_mp4) // 2])
    with pytest.raises(DataFormatError, match=r"cut\.mp4: the video ends after \d+ of the 12 frames"):
        frame_io.read_mp4(path)
    with pytest.warns(UserWarning, match=r"cut\.mp4: the video ends after \d+ of the 12 frames"):
        video, _ = frame_io.read_mp4(path, allow_partial=True)
    assert 0 < len(video) < VIDEO_FRAMES
