"""A scene's first frame from an uploaded image: cropping, resizing, and clear errors for bad files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from worldscape_jax.play.scene_start import SceneError, fit_image, synthworld_start, upload_start


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_a_wide_image_is_centre_cropped_then_resized():
    array = np.zeros((100, 300, 3), np.uint8)
    array[:, :100] = (255, 0, 0)         # left third: cropped away
    array[:, 100:150] = (0, 255, 0)      # the kept square's left half
    array[:, 150:200] = (0, 0, 255)      # its right half
    array[:, 200:] = (255, 255, 0)       # right third: cropped away
    frame = fit_image(Image.fromarray(array), 64, 64)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    assert np.all(frame[:, :28] == (0, 255, 0)) and np.all(frame[:, 36:] == (0, 0, 255))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_any_image_mode_becomes_rgb(mode):
    scene = upload_start(encoded(Image.new(mode, (50, 80), 128)), 64, 64)
    assert scene.first_frame.shape == (64, 64, 3) and scene.source == "upload" and scene.seed is None
    np.testing.assert_allclose(scene.intrinsics[2:], [0.5, 0.5])
    assert np.all(np.abs(scene.first_frame.astype(int) - scene.first_frame[0, 0].astype(int)) <= 1)


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (b"GIF89a not really", "not a readable image"),
    (encoded(Image.new("RGB", (32, 32)))[:40], "not a readable image"),   # truncated
])
def test_bad_uploads_raise_a_clear_error(data, reason):
    with pytest.raises(SceneError, match=f"uploaded image: .*{reason}"):
        upload_start(data, 64, 64)


def test_synthworld_seeds_are_checked():
    for seed in (-1, 2**31, 1.5, True, "7"):
        with pytest.raises(SceneError, match="scene seed"):
            synthworld_start(seed, 64, 64)
