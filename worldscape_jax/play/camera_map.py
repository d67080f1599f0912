"""The live top-down map of a stream (the paper's Figure 7): camera path, heading, and memory entries.

Seen from above, x to the right and z (forward of the start) up. The path is kept in bounded memory
however long the stream runs: when `PathLog` is full it drops every other point and from then on
keeps every second new one, so it always spans the whole walk at a resolution that halves as it
grows. `map_payload` is what the page draws (JSON); `draw_camera_map` draws the same dict with PIL
for headless runs, so the browser and the files show one picture.
"""

from __future__ import annotations

import math

import numpy as np
from jaxtyping import Float
from PIL import Image, ImageDraw

from worldscape_jax.play.engines import MemoryView

MAP_COLOURS = {"path": (150, 150, 150), "sink": (40, 90, 220), "local": (40, 170, 60),
               "selected": (235, 140, 20), "camera": (220, 40, 40)}


class PathLog:
    """Camera centres (x, z) of a stream in at most `capacity` points, spanning the whole stream."""

    def __init__(self, capacity: int = 1024):
        if capacity < 2 or capacity % 2:
            raise ValueError(f"PathLog: capacity must be an even number >= 2, got {capacity}")
        self.capacity = capacity
        self._points = np.zeros((capacity, 2), np.float32)
        self._count, self._stride, self._seen = 0, 1, 0

    def add(self, c2w: Float[np.ndarray, "4 4"]) -> None:
        """Adds the camera centre of c2w (kept when it falls on the current stride)."""
        self._seen += 1
        if (self._seen - 1) % self._stride:
            return
        if self._count == self.capacity:
            self._points[: self.capacity // 2] = self._points[::2]
            self._count, self._stride = self.capacity // 2, self._stride * 2
            if (self._seen - 1) % self._stride:
                return
        self._points[self._count] = np.asarray(c2w)[[0, 2], 3]
        self._count += 1

    @property
    def points(self) -> np.ndarray:
        return self._points[: self._count]


def heading_deg(c2w: Float[np.ndarray, "4 4"]) -> float:
    """Direction of the optical axis seen from above, degrees clockwise from +z: a right turn (E) increases it."""
    forward = np.asarray(c2w)[:3, 2]
    return math.degrees(math.atan2(float(forward[0]), float(forward[2])))


def map_payload(path: PathLog, c2w: np.ndarray, memory: MemoryView) -> dict:
    """The JSON-ready map: path [[x, z]], the camera (x, z, heading_deg), and sink/local/selected entries."""
    def entries(group):
        frames, centres = group
        return [{"frame": int(f), "x": float(c[0]), "z": float(c[2])} for f, c in zip(frames, centres)]

    return {"path": np.round(path.points, 4).tolist(),
            "camera": {"x": float(c2w[0, 3]), "z": float(c2w[2, 3]), "heading_deg": heading_deg(c2w)},
            "sink": entries(memory.sink), "local": entries(memory.local), "selected": entries(memory.selected)}


def draw_camera_map(payload: dict, size: int = 256, margin: int = 20, min_span: float = 1.0) -> np.ndarray:
    """uint8 [size, size, 3] picture of a map_payload: grey path, coloured memory entries, red camera."""
    marks = [(e["x"], e["z"]) for group in ("sink", "local", "selected") for e in payload[group]]
    camera = payload["camera"]
    points = np.asarray(payload["path"] + marks + [[camera["x"], camera["z"]]], np.float64).reshape(-1, 2)
    low, high = points.min(0), points.max(0)
    centre, span = (low + high) / 2, max(float(np.max(high - low)), min_span)

    def to_pixel(x, z):
        return (size / 2 + (x - centre[0]) / span * (size - 2 * margin),
                size / 2 - (z - centre[1]) / span * (size - 2 * margin))

    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    if len(payload["path"]) > 1:
        draw.line([to_pixel(x, z) for x, z in payload["path"]], fill=MAP_COLOURS["path"], width=2)
    for group, radius in (("selected", 5), ("local", 4), ("sink", 4)):
        for entry in payload[group]:
            x, y = to_pixel(entry["x"], entry["z"])
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], outline=MAP_COLOURS[group], width=2)
    x, y = to_pixel(camera["x"], camera["z"])
    angle = math.radians(camera["heading_deg"])
    tip = (x + 10 * math.sin(angle), y - 10 * math.cos(angle))
    left = (x + 5 * math.sin(angle - 2.4), y - 5 * math.cos(angle - 2.4))
    right = (x + 5 * math.sin(angle + 2.4), y - 5 * math.cos(angle + 2.4))
    draw.polygon([tip, left, right], fill=MAP_COLOURS["camera"])
    for row, group in enumerate(("sink", "local", "selected")):
        draw.text((4, 4 + 12 * row), f"{group} ({len(payload[group])})", fill=MAP_COLOURS[group])
    return np.asarray(image)
