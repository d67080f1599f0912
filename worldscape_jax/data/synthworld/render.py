"""A jitted JAX ray-caster for SynthWorld scenes: RGB and metric z-depth for any camera.

Each pixel casts the CameraCtrl ray of `geometry.plucker.world_rays` (through the pixel centre).
Every primitive is intersected analytically; the nearest hit wins. Shading is Lambertian with one
fixed directional light plus ambient; emissive materials (the sky) are not shaded. Textures are
solid patterns of the hit point in the primitive's own frame (so they move with the primitive),
with the normal component removed on flat faces so that a face shows a 2-D pattern.

Depth is z-depth: the hit point's coordinate along the camera's optical axis (+z of the camera),
not the Euclidean distance along the ray. A fronto-parallel plane at distance Z has depth Z at
every pixel. A pixel that hits nothing (impossible in closed SynthWorld scenes) gets depth 0 and
black. Everything is float32.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct
from jaxtyping import Array, Float, Int

from worldscape_jax.data.synthworld.scenes import Scene
from worldscape_jax.geometry.plucker import world_rays

EPS = 1e-4
NO_HIT = 1e9
LIGHT_DIRECTION = (0.35, -0.85, 0.4)  # towards the light; world y is down, so the light is above
AMBIENT = 0.45


@struct.dataclass
class Frame:
    """One rendered view: rgb in [0, 1], z-depth in metres, and the index of the primitive hit."""

    rgb: Float[Array, "... h w 3"]
    depth: Float[Array, "... h w"]
    primitive: Int[Array, "... h w"]


def _dot(a, b):
    return jnp.sum(a * b, axis=-1)


def _first_positive(t_near, t_far, hit):
    """The nearest intersection in front of the origin (t_far when the origin is inside), or NO_HIT."""
    t = jnp.where(t_near > EPS, t_near, t_far)
    return jnp.where(hit & (t > EPS), t, NO_HIT)


def intersect_planes(o, d, normal, offset):
    """Ray-plane distances [R, P]: t = (offset - n.o) / (n.d)."""
    denom = d @ normal.T
    safe = jnp.where(jnp.abs(denom) > 1e-8, denom, 1e-8)
    t = (offset[None] - o @ normal.T) / safe
    return jnp.where((jnp.abs(denom) > 1e-8) & (t > EPS), t, NO_HIT)


def intersect_boxes(o, d, center, half):
    """Ray-box (slab test) distances [R, B]."""
    inv = 1.0 / jnp.where(jnp.abs(d) > 1e-8, d, 1e-8)
    rel = center[None] - o[:, None]
    t1 = (rel - half[None]) * inv[:, None]
    t2 = (rel + half[None]) * inv[:, None]
    t_near = jnp.max(jnp.minimum(t1, t2), axis=-1)
    t_far = jnp.min(jnp.maximum(t1, t2), axis=-1)
    return _first_positive(t_near, t_far, t_far >= t_near)


def intersect_spheres(o, d, center, radius):
    """Ray-sphere distances [R, S] (the far root when the origin is inside, e.g. the sky dome)."""
    oc = o[:, None] - center[None]
    b = _dot(oc, d[:, None])
    disc = b * b - (_dot(oc, oc) - radius[None] ** 2)
    root = jnp.sqrt(jnp.maximum(disc, 0.0))
    return _first_positive(-b - root, -b + root, disc >= 0)


def intersect_capsules(o, d, a, b, radius):
    """Ray-capsule distances [R, C]: the cylinder body, else the nearer end cap (origin outside)."""
    ba = (b - a)[None]
    oa = o[:, None] - a[None]
    dd = d[:, None]
    baba, bard, baoa = _dot(ba, ba), _dot(ba, dd), _dot(ba, oa)
    rdoa, oaoa, r2 = _dot(dd, oa), _dot(oa, oa), radius[None] ** 2
    qa = baba - bard * bard
    qb = baba * rdoa - baoa * bard
    qc = baba * oaoa - baoa * baoa - r2 * baba
    h = qb * qb - qa * qc
    t_body = (-qb - jnp.sqrt(jnp.maximum(h, 0.0))) / jnp.where(jnp.abs(qa) > 1e-12, qa, 1e-12)
    y = baoa + t_body * bard
    body_hit = (h >= 0) & (y > 0) & (y < baba) & (t_body > EPS)
    oc = jnp.where((y <= 0)[..., None], oa, o[:, None] - b[None])
    cb = _dot(dd, oc)
    ch = cb * cb - (_dot(oc, oc) - r2)
    t_cap = -cb - jnp.sqrt(jnp.maximum(ch, 0.0))
    cap_hit = (h >= 0) & (ch > 0) & (t_cap > EPS)
    return jnp.where(body_hit, t_body, jnp.where(cap_hit, t_cap, NO_HIT))


def _take(values, index):
    return jnp.take(values, index, axis=0)


def surface_normals(scene: Scene, kind, local, point):
    """Outward normals at hit points, per primitive kind (0 plane, 1 box, 2 sphere, 3 capsule)."""
    plane_n = _take(scene.plane_normal, local[0])
    box_q = (point - _take(scene.box_center, local[1])) / _take(scene.box_half, local[1])
    box_axis = jax.nn.one_hot(jnp.argmax(jnp.abs(box_q), axis=-1), 3, dtype=point.dtype)
    box_n = box_axis * jnp.sign(box_q)
    sphere_n = point - _take(scene.sphere_center, local[2])
    a, b = _take(scene.capsule_a, local[3]), _take(scene.capsule_b, local[3])
    s = jnp.clip(_dot(point - a, b - a) / jnp.maximum(_dot(b - a, b - a), 1e-12), 0.0, 1.0)
    capsule_n = point - (a + s[..., None] * (b - a))
    normals = jnp.select([kind[..., None] == k for k in range(3)], [plane_n, box_n, sphere_n], capsule_n)
    return normals / jnp.maximum(jnp.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)


def texture_anchor(scene: Scene, kind, local):
    """The point a primitive's texture is attached to (its centre; the origin for planes)."""
    box_c = _take(scene.box_center, local[1])
    sphere_c = _take(scene.sphere_center, local[2])
    capsule_c = _take(scene.capsule_a, local[3])
    return jnp.select([kind[..., None] == k for k in range(3)], [jnp.zeros_like(box_c), box_c, sphere_c], capsule_c)


def texture_pattern(q, texture, frequency):
    """Pattern value in [0, 1] of local point q: checker, diagonal stripes or smooth waves."""
    p = q * frequency[..., None]
    cells = jnp.floor(p)
    checker = jnp.mod(jnp.sum(cells, axis=-1), 2.0)
    stripes = jnp.mod(jnp.floor(jnp.sum(p, axis=-1)), 2.0)
    waves = 0.5 + 0.25 * (jnp.sin(6.0 * p[..., 0] + 2.0 * jnp.sin(4.0 * p[..., 2]))
                          + jnp.sin(5.0 * p[..., 1] + 3.0 * jnp.sin(3.0 * p[..., 0] + p[..., 2])))
    return jnp.select([texture == 0, texture == 1], [checker, stripes], waves)


def shade(scene: Scene, index, kind, local, point, direction):
    """Colour of every hit: textured albedo times (ambient + Lambert), or the albedo if emissive."""
    normal = surface_normals(scene, kind, local, point)
    normal = jnp.where((_dot(normal, direction) > 0)[..., None], -normal, normal)  # face the viewer
    flat = (kind <= 1)[..., None]
    q = point - texture_anchor(scene, kind, local)
    q = jnp.where(flat, q - normal * _dot(q, normal)[..., None], q)
    pattern = texture_pattern(q, _take(scene.texture, index), _take(scene.frequency, index))[..., None]
    albedo = _take(scene.color_a, index) * (1 - pattern) + _take(scene.color_b, index) * pattern
    light = jnp.asarray(LIGHT_DIRECTION, jnp.float32)
    light = light / jnp.linalg.norm(light)
    lambert = AMBIENT + (1 - AMBIENT) * jnp.maximum(_dot(normal, light), 0.0)[..., None]
    return jnp.where(_take(scene.emissive, index)[..., None], albedo, albedo * lambert)


def cast_rays(scene: Scene, origin: Float[Array, "r 3"], direction: Float[Array, "r 3"]):
    """Nearest hit of every ray: (distance t [R], rgb [R, 3], primitive index [R], -1 for none)."""
    distances = [
        intersect_planes(origin, direction, scene.plane_normal, scene.plane_offset),
        intersect_boxes(origin, direction, scene.box_center, scene.box_half),
        intersect_spheres(origin, direction, scene.sphere_center, scene.sphere_radius),
        intersect_capsules(origin, direction, scene.capsule_a, scene.capsule_b, scene.capsule_radius),
    ]
    all_t = jnp.concatenate(distances, axis=-1)
    all_t = jnp.where(scene.active[None], all_t, NO_HIT)
    index = jnp.argmin(all_t, axis=-1)
    t = jnp.take_along_axis(all_t, index[:, None], axis=-1)[:, 0]
    starts = jnp.cumsum(jnp.asarray([0, *scene.counts[:3]]))
    kind = jnp.sum(index[:, None] >= starts[None, 1:], axis=-1)
    local = [jnp.clip(index - starts[k], 0, count - 1) for k, count in enumerate(scene.counts)]
    point = origin + t[:, None] * direction
    hit = t < NO_HIT
    rgb = jnp.where(hit[:, None], shade(scene, index, kind, local, point, direction), 0.0)
    return jnp.where(hit, t, 0.0), rgb, jnp.where(hit, index, -1)


def render_frame(scene: Scene, c2w: Float[Array, "4 4"], intrinsics: Float[Array, "4"], height: int,
                 width: int) -> Frame:
    """Renders one view (not jitted on its own; see `render_frames`)."""
    origin, direction = world_rays(c2w, intrinsics, height, width)
    t, rgb, index = cast_rays(scene, origin.reshape(-1, 3), direction.reshape(-1, 3))
    optical_axis = c2w[:3, 2]
    z_depth = t * (direction.reshape(-1, 3) @ optical_axis)
    return Frame(rgb=rgb.reshape(height, width, 3), depth=z_depth.reshape(height, width),
                 primitive=index.reshape(height, width))


@functools.partial(jax.jit, static_argnames=("height", "width"))
def render_frames(scene: Scene, c2w: Float[Array, "f 4 4"], intrinsics: Float[Array, "f 4"], height: int,
                  width: int) -> Frame:
    """Renders F views of one static scene: rgb [F, H, W, 3], depth [F, H, W], primitive [F, H, W]."""
    return jax.vmap(render_frame, in_axes=(None, 0, 0, None, None))(scene, c2w, intrinsics, height, width)


@functools.partial(jax.jit, static_argnames=("height", "width"))
def render_dynamic_frames(scenes: Scene, c2w: Float[Array, "f 4 4"], intrinsics: Float[Array, "f 4"],
                          height: int, width: int) -> Frame:
    """Renders F views where the scene itself changes per frame (every `scenes` leaf has a leading F)."""
    return jax.vmap(render_frame, in_axes=(0, 0, 0, None, None))(scenes, c2w, intrinsics, height, width)
