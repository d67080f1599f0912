"""SynthWorld scenes: fixed-size arrays of analytic primitives, generated deterministically by seed.

A scene is a `Scene` pytree of planes, axis-aligned boxes, spheres and capsules, each with a material
(two colours, a texture id, a texture frequency, an emissive flag). Fixed sizes per scene kind mean
one compiled renderer serves every seed; unused slots are switched off by `active`.

World frame: like the OpenCV camera, y points DOWN (so the identity c2w is an upright camera). The
navigation camera's eye is at the origin, the floor is the plane y = +EYE_HEIGHT. Units are metres.
Objects are kept out of a free disc of radius `free_radius` around the origin (in x-z), so the
camera paths of `clips.py` never pass through them.

Kinds:
  * "indoor": a room (floor, ceiling, 4 walls), boxes, pillars (vertical capsules), spheres.
  * "outdoor": a ground plane and an emissive sky dome (a large sphere seen from inside), boxes,
    far "buildings", pillars, spheres.
  * manipulation scenes (see hands.py) add a table, a graspable box and the hand's capsules.
"""

from __future__ import annotations

import colorsys
import dataclasses

import jax.numpy as jnp
import numpy as np
from flax import struct
from jaxtyping import Array, Bool, Float, Int

EYE_HEIGHT = 1.2
TEXTURES = ("checker", "stripes", "waves")
NUM_PLANES, NUM_BOXES, NUM_SPHERES, NUM_CAPSULES = 6, 10, 5, 4
SKY_RADIUS = 60.0
MIN_CONTRAST = 0.15  # least luminance difference between a texture's two colours


def luminance(rgb) -> float:
    """Rec. 601 luma of an RGB colour in [0, 1]."""
    return float(np.dot(rgb, [0.299, 0.587, 0.114]))


@struct.dataclass
class Scene:
    """Primitives and their materials. Material rows follow the order planes, boxes, spheres, capsules."""

    plane_normal: Float[Array, "p 3"]   # unit normal n; the plane is {x : n.x = offset}
    plane_offset: Float[Array, "p"]
    box_center: Float[Array, "b 3"]
    box_half: Float[Array, "b 3"]       # half extents along x, y, z
    sphere_center: Float[Array, "s 3"]
    sphere_radius: Float[Array, "s"]
    capsule_a: Float[Array, "c 3"]      # segment end points
    capsule_b: Float[Array, "c 3"]
    capsule_radius: Float[Array, "c"]
    color_a: Float[Array, "n 3"]        # texture colours in [0, 1]
    color_b: Float[Array, "n 3"]
    texture: Int[Array, "n"]            # index into TEXTURES
    frequency: Float[Array, "n"]        # texture cycles per metre
    emissive: Bool[Array, "n"]          # not shaded (the sky)
    active: Bool[Array, "n"]

    @property
    def counts(self) -> tuple[int, int, int, int]:
        """(planes, boxes, spheres, capsules)."""
        return (self.plane_offset.shape[-1], self.box_center.shape[-2], self.sphere_radius.shape[-1],
                self.capsule_radius.shape[-1])


@dataclasses.dataclass
class SceneBuilder:
    """Collects primitives into fixed-size numpy slots, then freezes them into a `Scene`."""

    rng: np.random.Generator
    num_capsules: int = NUM_CAPSULES
    planes: list = dataclasses.field(default_factory=list)
    boxes: list = dataclasses.field(default_factory=list)
    spheres: list = dataclasses.field(default_factory=list)
    capsules: list = dataclasses.field(default_factory=list)

    def material(self, color=None, color_b=None, texture=None, frequency=None, emissive=False):
        """A random (or given) material: a saturated colour, a second tone, a texture and frequency."""
        if color is None:
            color = colorsys.hsv_to_rgb(self.rng.uniform(), self.rng.uniform(0.35, 0.9), self.rng.uniform(0.55, 0.95))
        color = np.asarray(color, np.float32)
        hue_shift = colorsys.hsv_to_rgb(self.rng.uniform(), self.rng.uniform(0.2, 0.8), self.rng.uniform(0.2, 0.5))
        if color_b is None:
            color_b = np.clip(0.45 * color + 0.55 * np.asarray(hue_shift, np.float32), 0, 1)
            if abs(luminance(color) - luminance(color_b)) < MIN_CONTRAST:  # keep the pattern visible
                color_b = 0.5 * color if luminance(color) > 0.35 else color + 0.5 * (1.0 - color)
        color_b = np.asarray(color_b, np.float32)
        texture = int(self.rng.integers(len(TEXTURES))) if texture is None else TEXTURES.index(texture)
        frequency = float(self.rng.uniform(1.5, 5.0)) if frequency is None else frequency
        return dict(color_a=color, color_b=color_b, texture=texture, frequency=frequency, emissive=emissive)

    def add_plane(self, normal, offset, **material):
        self.planes.append((np.asarray(normal, np.float32), offset, self.material(**material)))

    def add_box(self, center, half, **material):
        self.boxes.append((np.asarray(center, np.float32), np.asarray(half, np.float32), self.material(**material)))

    def add_sphere(self, center, radius, **material):
        self.spheres.append((np.asarray(center, np.float32), radius, self.material(**material)))

    def add_capsule(self, a, b, radius, **material):
        self.capsules.append((np.asarray(a, np.float32), np.asarray(b, np.float32), radius, self.material(**material)))

    def build(self) -> Scene:
        """Pads every kind to its fixed count (inactive slots) and returns the `Scene` (jnp arrays)."""
        slots = [(self.planes, NUM_PLANES, "planes"), (self.boxes, NUM_BOXES, "boxes"),
                 (self.spheres, NUM_SPHERES, "spheres"), (self.capsules, self.num_capsules, "capsules")]
        for items, capacity, name in slots:
            if len(items) > capacity:
                raise ValueError(f"SceneBuilder: {len(items)} {name} exceed the fixed capacity {capacity}")
        materials, active = [], []
        for items, capacity, _ in slots:
            materials += [item[-1] for item in items] + [self.material()] * (capacity - len(items))
            active += [True] * len(items) + [False] * (capacity - len(items))

        def pad(values, capacity, fill):
            values = list(values) + [fill] * (capacity - len(values))
            return jnp.asarray(np.asarray(values, np.float32))

        far = np.full(3, 1e3, np.float32)  # inactive geometry is parked far away and masked anyway
        return Scene(
            plane_normal=pad([p[0] for p in self.planes], NUM_PLANES, np.asarray([0, 1, 0], np.float32)),
            plane_offset=pad([p[1] for p in self.planes], NUM_PLANES, 1e3),
            box_center=pad([b[0] for b in self.boxes], NUM_BOXES, far),
            box_half=pad([b[1] for b in self.boxes], NUM_BOXES, np.full(3, 0.1, np.float32)),
            sphere_center=pad([s[0] for s in self.spheres], NUM_SPHERES, far),
            sphere_radius=pad([s[1] for s in self.spheres], NUM_SPHERES, 0.1),
            capsule_a=pad([c[0] for c in self.capsules], self.num_capsules, far),
            capsule_b=pad([c[1] for c in self.capsules], self.num_capsules, far + 0.1),
            capsule_radius=pad([c[2] for c in self.capsules], self.num_capsules, 0.1),
            color_a=jnp.asarray(np.stack([m["color_a"] for m in materials])),
            color_b=jnp.asarray(np.stack([m["color_b"] for m in materials])),
            texture=jnp.asarray(np.asarray([m["texture"] for m in materials], np.int32)),
            frequency=jnp.asarray(np.asarray([m["frequency"] for m in materials], np.float32)),
            emissive=jnp.asarray(np.asarray([m["emissive"] for m in materials], bool)),
            active=jnp.asarray(np.asarray(active, bool)),
        )


def scene_kind(seed: int) -> str:
    """"indoor" or "outdoor", fixed by the seed (even seeds are rooms, odd seeds yards)."""
    return "indoor" if seed % 2 == 0 else "outdoor"


def _ring_position(rng, inner: float, outer_x: float, outer_z: float) -> np.ndarray:
    """A random (x, z) outside the free disc of radius `inner` and inside |x| < outer_x, |z| < outer_z."""
    for _ in range(1000):
        xz = rng.uniform([-outer_x, -outer_z], [outer_x, outer_z])
        if np.hypot(*xz) > inner:
            return xz
    raise RuntimeError("scenes: could not place an object outside the free disc (room too small)")


def add_room(builder: SceneBuilder, half_x: float, half_z: float, height: float) -> None:
    """Floor, ceiling and four walls of a room around the origin, each with its own material."""
    ceiling_y = EYE_HEIGHT - height
    builder.add_plane([0, 1, 0], EYE_HEIGHT, texture="checker", frequency=float(builder.rng.uniform(1.0, 2.5)))
    builder.add_plane([0, 1, 0], ceiling_y)
    builder.add_plane([1, 0, 0], half_x)
    builder.add_plane([1, 0, 0], -half_x)
    builder.add_plane([0, 0, 1], half_z)
    builder.add_plane([0, 0, 1], -half_z)


def add_clutter(builder: SceneBuilder, free_radius: float, half_x: float, half_z: float, ceiling_y: float,
                num_boxes: int, num_spheres: int, num_pillars: int) -> None:
    """Boxes standing on the floor, spheres, and floor-to-ceiling pillars, outside the free disc."""
    rng = builder.rng
    for _ in range(num_boxes):
        half = rng.uniform([0.15, 0.15, 0.15], [0.5, 0.7, 0.5])
        x, z = _ring_position(rng, free_radius + np.hypot(half[0], half[2]), half_x - half[0], half_z - half[2])
        builder.add_box([x, EYE_HEIGHT - half[1], z], half)
    for _ in range(num_spheres):
        radius = rng.uniform(0.15, 0.45)
        x, z = _ring_position(rng, free_radius + radius, half_x - radius, half_z - radius)
        builder.add_sphere([x, EYE_HEIGHT - radius - rng.uniform(0.0, 0.8), z], radius)
    for _ in range(num_pillars):
        radius = rng.uniform(0.08, 0.2)
        x, z = _ring_position(rng, free_radius + radius, half_x - radius, half_z - radius)
        builder.add_capsule([x, EYE_HEIGHT + radius, z], [x, ceiling_y - radius, z], radius)


def indoor_scene(rng: np.random.Generator, free_radius: float, num_capsules: int = NUM_CAPSULES) -> SceneBuilder:
    """A textured room with clutter around the free disc."""
    builder = SceneBuilder(rng, num_capsules=num_capsules)
    half_x, half_z, height = rng.uniform(2.8, 4.0), rng.uniform(2.8, 4.0), rng.uniform(2.4, 3.2)
    add_room(builder, half_x, half_z, height)
    add_clutter(builder, free_radius, half_x, half_z, EYE_HEIGHT - height, num_boxes=int(rng.integers(4, 8)),
                num_spheres=int(rng.integers(1, NUM_SPHERES + 1)), num_pillars=int(rng.integers(1, 4)))
    return builder


def outdoor_scene(rng: np.random.Generator, free_radius: float, num_capsules: int = NUM_CAPSULES) -> SceneBuilder:
    """A yard: textured ground, a sky dome, clutter nearby and large far boxes ("buildings")."""
    builder = SceneBuilder(rng, num_capsules=num_capsules)
    builder.add_plane([0, 1, 0], EYE_HEIGHT, texture="checker", frequency=float(rng.uniform(0.8, 2.0)),
                      color=colorsys.hsv_to_rgb(rng.uniform(0.2, 0.4), 0.6, 0.7))
    builder.add_sphere([0.0, 0.0, 0.0], SKY_RADIUS, texture="waves", frequency=0.08, emissive=True,
                       color=colorsys.hsv_to_rgb(rng.uniform(0.52, 0.65), rng.uniform(0.3, 0.6), 0.95))
    add_clutter(builder, free_radius, 5.0, 5.0, EYE_HEIGHT - 4.0, num_boxes=int(rng.integers(3, 6)),
                num_spheres=int(rng.integers(1, NUM_SPHERES)), num_pillars=int(rng.integers(1, 4)))
    for _ in range(NUM_BOXES - len(builder.boxes)):
        angle, dist = rng.uniform(0, 2 * np.pi), rng.uniform(12.0, 25.0)
        half = rng.uniform([1.0, 1.5, 1.0], [3.0, 5.0, 3.0])
        builder.add_box([dist * np.sin(angle), EYE_HEIGHT - half[1], dist * np.cos(angle)], half,
                        frequency=float(rng.uniform(0.3, 1.0)))
    return builder


def navigation_scene(seed: int, free_radius: float = 1.6) -> Scene:
    """The navigation scene of `seed` (deterministic: the same seed gives the same arrays)."""
    if seed < 0:
        raise ValueError(f"scene_seed must be >= 0, got {seed}")
    rng = np.random.default_rng(seed)
    make = indoor_scene if scene_kind(seed) == "indoor" else outdoor_scene
    return make(rng, free_radius).build()
