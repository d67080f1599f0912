"""A jitted JAX ray-caster for SynthWorld scenes: RGB and metric z-depth for any camera.

Each pixel casts the CameraCtrl ray of `geometry.plucker.world_rays` (through the pixel centre).
Every primitive is intersected analytically; the nearest hit wins. Shading is Lambertian with one
fixed directional light plus ambient; emissive materials (the sky) are not shaded. Textures are
solid patterns of the hit point in the primitive's own frame (so they move with the primitive),
with the normal component removed on flat faces so that a face shows a 2-D pattern.

Anti-aliasing (`supersample` = n rays per pixel, supersampling.py): one ray per pixel puts a texture
or object edge in a whole pixel or not at all, so edges jitter by about +-0.5 px between frames. With
n > 1 the RGB of a pixel is the mean colour of n sub-pixel rays spread over the pixel's square (a box
filter) on an "n-rooks" lattice, which locates any axis-aligned edge to 1/n pixel. A sub-pixel ray is
the pixel-centre ray of the same camera with its principal point shifted by the offset, so the
normalised intrinsics describe the image unchanged. Depth and the primitive index always come from
the single ray through the pixel centre (exact z-depth; the Plücker ray of a pixel hits the drawn
point); for odd n that ray is also the pattern's centre sample and is cast once. n = 1 is plain
point sampling. Cost grows linearly in n (launch/bench_render.py).

Depth is z-depth: the hit point's coordinate along the camera's optical axis (+z of the camera),
not the Euclidean distance along the ray. A fronto-parallel plane at distance Z has depth Z at
every pixel. A pixel that hits nothing (impossible in closed SynthWorld scenes) gets depth 0 and
black. Everything is float32.

`RENDER_VERSION` changes whenever the pixels a given call renders change (a cache of rendered or
encoded SynthWorld data must include it in its key). History: 1 point-sampled RGB; 2 anti-aliased RGB
(`clips.DEFAULT_SUPERSAMPLE` rays per pixel by default).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jaxtyping import Array, Float, Int

from worldscape_jax.data.synthworld.scenes import Scene
from worldscape_jax.data.synthworld.supersampling import subpixel_offsets
from worldscape_jax.geometry.plucker import world_rays

RENDER_VERSION = 2
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


# Vectors are tuples of three arrays (x, y, z). Intersections use a [primitives, rays] layout
# (rays on the minor axis), so every operation is elementwise and vectorises over the rays, and the
# nearest hit is an elementwise minimum over rows. This is several times faster on a CPU than
# [rays, primitives, 3] arrays with reductions over the size-3 axis.


def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _sub(a, b):
    return tuple(x - y for x, y in zip(a, b))


def _columns(values):
    """[N, 3] parameters as three [N, 1] columns, to broadcast against [1, R] rays."""
    return tuple(values[:, i, None] for i in range(3))


def _first_positive(t_near, t_far, hit):
    """The nearest intersection in front of the origin (t_far when the origin is inside), or NO_HIT."""
    t = jnp.where(t_near > EPS, t_near, t_far)
    return jnp.where(hit & (t > EPS), t, NO_HIT)


def intersect_planes(o, d, normal, offset):
    """Ray-plane distances [P, R]: t = (offset - n.o) / (n.d)."""
    n = _columns(normal)
    denom = _dot(n, d)
    ok = jnp.abs(denom) > 1e-8
    t = (offset[:, None] - _dot(n, o)) / jnp.where(ok, denom, 1e-8)
    return jnp.where(ok & (t > EPS), t, NO_HIT)


def intersect_boxes(o, d, center, half):
    """Ray-box (slab test) distances [B, R]."""
    c, h = _columns(center), _columns(half)
    t_near, t_far = None, None
    for axis in range(3):
        inv = 1.0 / jnp.where(jnp.abs(d[axis]) > 1e-8, d[axis], 1e-8)
        t1 = (c[axis] - h[axis] - o[axis]) * inv
        t2 = (c[axis] + h[axis] - o[axis]) * inv
        lo, hi = jnp.minimum(t1, t2), jnp.maximum(t1, t2)
        t_near = lo if t_near is None else jnp.maximum(t_near, lo)
        t_far = hi if t_far is None else jnp.minimum(t_far, hi)
    return _first_positive(t_near, t_far, t_far >= t_near)


def intersect_spheres(o, d, center, radius):
    """Ray-sphere distances [S, R] (the far root when the origin is inside, e.g. the sky dome)."""
    oc = _sub(o, _columns(center))
    b = _dot(oc, d)
    disc = b * b - (_dot(oc, oc) - radius[:, None] ** 2)
    root = jnp.sqrt(jnp.maximum(disc, 0.0))
    return _first_positive(-b - root, -b + root, disc >= 0)


def intersect_capsules(o, d, a, b, radius):
    """Ray-capsule distances [C, R]: the cylinder body, else the nearer end cap (origin outside)."""
    a, b = _columns(a), _columns(b)
    ba, oa = _sub(b, a), _sub(o, a)
    baba, bard, baoa = _dot(ba, ba), _dot(ba, d), _dot(ba, oa)
    rdoa, oaoa, r2 = _dot(d, oa), _dot(oa, oa), radius[:, None] ** 2
    qa = baba - bard * bard
    qb = baba * rdoa - baoa * bard
    qc = baba * oaoa - baoa * baoa - r2 * baba
    h = qb * qb - qa * qc
    t_body = (-qb - jnp.sqrt(jnp.maximum(h, 0.0))) / jnp.where(jnp.abs(qa) > 1e-12, qa, 1e-12)
    y = baoa + t_body * bard
    body_hit = (h >= 0) & (y > 0) & (y < baba) & (t_body > EPS)
    below = y <= 0
    oc = tuple(jnp.where(below, oa_i, o_i - b_i) for oa_i, o_i, b_i in zip(oa, o, b))
    cb = _dot(d, oc)
    ch = cb * cb - (_dot(oc, oc) - r2)
    t_cap = -cb - jnp.sqrt(jnp.maximum(ch, 0.0))
    cap_hit = (h >= 0) & (ch > 0) & (t_cap > EPS)
    return jnp.where(body_hit, t_body, jnp.where(cap_hit, t_cap, NO_HIT))


def primitive_table(scene: Scene) -> Float[Array, "n 16"]:
    """Per-primitive attributes for shading, one row per primitive (planes, boxes, spheres, capsules).

    Columns: kind, centre (3), extent (3), colour a (3), colour b (3), texture, frequency, emissive.
    centre/extent are (0, normal) for planes, (centre, half) for boxes, (centre, 0) for spheres and
    (a, b) for capsules. The centre is also the texture's anchor.
    """
    planes, boxes, spheres, capsules = scene.counts
    kind = jnp.concatenate([jnp.full((n,), k, jnp.float32) for k, n in enumerate(scene.counts)])
    centre = jnp.concatenate([jnp.zeros((planes, 3)), scene.box_center, scene.sphere_center, scene.capsule_a])
    extent = jnp.concatenate([scene.plane_normal, scene.box_half, jnp.zeros((spheres, 3)), scene.capsule_b])
    return jnp.concatenate([kind[:, None], centre, extent, scene.color_a, scene.color_b,
                            scene.texture[:, None].astype(jnp.float32), scene.frequency[:, None],
                            scene.emissive[:, None].astype(jnp.float32)], axis=1)


def _normalised(v):
    norm = jnp.maximum(jnp.sqrt(_dot(v, v)), 1e-12)
    return tuple(x / norm for x in v)


def surface_normals(kind, centre, extent, point):
    """Outward unit normals at hit points from the primitive's kind, centre and extent."""
    box_q = tuple((p - c) / jnp.where(e != 0, e, 1.0) for p, c, e in zip(point, centre, extent))
    mags = [jnp.abs(q) for q in box_q]
    major = [(mags[0] >= mags[1]) & (mags[0] >= mags[2]), (mags[1] > mags[0]) & (mags[1] >= mags[2])]
    major.append(~(major[0] | major[1]))
    box_n = tuple(jnp.where(m, jnp.sign(q), 0.0) for m, q in zip(major, box_q))
    sphere_n = _sub(point, centre)
    ba = _sub(extent, centre)
    s = jnp.clip(_dot(_sub(point, centre), ba) / jnp.maximum(_dot(ba, ba), 1e-12), 0.0, 1.0)
    capsule_n = tuple(p - (c + s * b) for p, c, b in zip(point, centre, ba))
    per_kind = (extent, box_n, sphere_n, capsule_n)
    return _normalised(tuple(jnp.select([kind == k for k in range(3)], [v[i] for v in per_kind[:3]], per_kind[3][i])
                             for i in range(3)))


def texture_pattern(q, texture, frequency):
    """Pattern value in [0, 1] of local point q: checker, diagonal stripes or smooth waves."""
    p = tuple(x * frequency for x in q)
    checker = jnp.mod(jnp.floor(p[0]) + jnp.floor(p[1]) + jnp.floor(p[2]), 2.0)
    stripes = jnp.mod(jnp.floor(p[0] + p[1] + p[2]), 2.0)
    waves = 0.5 + 0.25 * (jnp.sin(6.0 * p[0] + 2.0 * jnp.sin(4.0 * p[2]))
                          + jnp.sin(5.0 * p[1] + 3.0 * jnp.sin(3.0 * p[0] + p[2])))
    return jnp.select([texture == 0, texture == 1], [checker, stripes], waves)


def shade(attributes, point, direction):
    """Colour [3, R] of every hit from its primitive's attribute rows [16, R] (see primitive_table)."""
    kind, centre, extent = attributes[0], tuple(attributes[1:4]), tuple(attributes[4:7])
    color_a, color_b = attributes[7:10], attributes[10:13]
    texture, frequency, emissive = attributes[13], attributes[14], attributes[15]
    normal = surface_normals(kind, centre, extent, point)
    facing = jnp.where(_dot(normal, direction) > 0, -1.0, 1.0)  # make the normal face the viewer
    normal = tuple(n * facing for n in normal)
    q = _sub(point, centre)
    along = jnp.where(kind <= 1, _dot(q, normal), 0.0)  # flat faces show a 2-D pattern
    q = tuple(qi - ni * along for qi, ni in zip(q, normal))
    pattern = texture_pattern(q, jnp.round(texture), frequency)
    albedo = color_a * (1 - pattern) + color_b * pattern
    light = np.asarray(LIGHT_DIRECTION) / np.linalg.norm(LIGHT_DIRECTION)
    lambert = AMBIENT + (1 - AMBIENT) * jnp.maximum(_dot(normal, tuple(light)), 0.0)
    return jnp.where(emissive > 0.5, albedo, albedo * lambert)


def nearest_hits(scene: Scene, o, d):
    """Distance [R] and primitive index [R] of the nearest active hit (NO_HIT, 0 when none).

    Two plain min-reductions (the distance, then the first primitive at that distance) instead of
    an argmin, whose variadic reduction XLA's CPU backend runs much slower.
    """
    rows = jnp.concatenate([
        intersect_planes(o, d, scene.plane_normal, scene.plane_offset),
        intersect_boxes(o, d, scene.box_center, scene.box_half),
        intersect_spheres(o, d, scene.sphere_center, scene.sphere_radius),
        intersect_capsules(o, d, scene.capsule_a, scene.capsule_b, scene.capsule_radius),
    ], axis=0)
    rows = jnp.where(scene.active[:, None], rows, NO_HIT)
    best_t = jnp.min(rows, axis=0)
    candidates = jnp.where(rows == best_t[None], jnp.arange(rows.shape[0], dtype=jnp.int32)[:, None], rows.shape[0])
    return best_t, jnp.min(candidates, axis=0)


def cast_rays(scene: Scene, origin: Float[Array, "r 3"], direction: Float[Array, "r 3"]):
    """Nearest hit of every ray: (distance t [R], rgb [R, 3], primitive index [R], -1 for none)."""
    o = tuple(origin[None, :, i] for i in range(3))
    d = tuple(direction[None, :, i] for i in range(3))
    t, index = nearest_hits(scene, o, d)
    attributes = jnp.take(primitive_table(scene), index, axis=0).T  # one gather for all attributes
    point = tuple(o[i][0] + t * d[i][0] for i in range(3))
    hit = t < NO_HIT
    rgb = jnp.where(hit[None], jnp.stack(shade(attributes, point, tuple(x[0] for x in d))), 0.0).T
    return jnp.where(hit, t, 0.0), rgb, jnp.where(hit, index, -1)


def shifted_intrinsics(intrinsics: Float[Array, "4"], offset: np.ndarray, height: int, width: int) -> Float[Array, "4"]:
    """Normalised intrinsics whose pixel-centre rays pass through centre + offset (pixels) instead."""
    shift = jnp.asarray([0.0, 0.0, offset[0] / width, offset[1] / height], jnp.float32)
    return intrinsics - shift


def supersampled_rgb(scene: Scene, c2w: Float[Array, "4 4"], intrinsics: Float[Array, "4"], height: int,
                     width: int, supersample: int, centre_rgb: Float[Array, "r 3"]) -> Float[Array, "r 3"]:
    """Box-filtered RGB [H*W, 3]: the mean colour of the `supersample` sub-pixel rays of every pixel.

    Rays are cast one sub-pixel position at a time (`lax.map`), which keeps the working set of one
    position in cache; the centre ray's colour is reused when the pattern contains the centre.
    """
    offsets = subpixel_offsets(supersample)
    has_centre = bool(np.any(np.all(offsets == 0.0, axis=1)))
    if has_centre:
        offsets = offsets[np.any(offsets != 0.0, axis=1)]
    shifted = jnp.stack([shifted_intrinsics(intrinsics, offset, height, width) for offset in offsets])

    def colour_at(sub_intrinsics):
        origin, direction = world_rays(c2w, sub_intrinsics, height, width)
        return cast_rays(scene, origin.reshape(-1, 3), direction.reshape(-1, 3))[1]

    total = jnp.sum(jax.lax.map(colour_at, shifted), axis=0)
    if has_centre:
        total = total + centre_rgb
    return total / supersample


def render_frame(scene: Scene, c2w: Float[Array, "4 4"], intrinsics: Float[Array, "4"], height: int,
                 width: int, supersample: int = 1) -> Frame:
    """Renders one view (not jitted on its own; see `render_frames`); RGB averaged over `supersample` rays."""
    origin, direction = world_rays(c2w, intrinsics, height, width)
    t, rgb, index = cast_rays(scene, origin.reshape(-1, 3), direction.reshape(-1, 3))
    if supersample > 1:
        rgb = supersampled_rgb(scene, c2w, intrinsics, height, width, supersample, rgb)
    optical_axis = c2w[:3, 2]
    z_depth = t * (direction.reshape(-1, 3) @ optical_axis)
    return Frame(rgb=rgb.reshape(height, width, 3), depth=z_depth.reshape(height, width),
                 primitive=index.reshape(height, width))


def _check_supersample(supersample) -> int:
    subpixel_offsets(supersample)  # raises for a bad value
    return int(supersample)


@functools.partial(jax.jit, static_argnames=("height", "width", "supersample"))
def _render_frames(scene, c2w, intrinsics, height, width, supersample):
    return jax.lax.map(lambda args: render_frame(scene, *args, height, width, supersample), (c2w, intrinsics))


@functools.partial(jax.jit, static_argnames=("height", "width", "supersample"))
def _render_dynamic_frames(scenes, c2w, intrinsics, height, width, supersample):
    return jax.lax.map(lambda args: render_frame(*args, height, width, supersample), (scenes, c2w, intrinsics))


def render_frames(scene: Scene, c2w: Float[Array, "f 4 4"], intrinsics: Float[Array, "f 4"], height: int,
                  width: int, supersample: int = 1) -> Frame:
    """Renders F views of one static scene: rgb [F, H, W, 3], depth [F, H, W], primitive [F, H, W].

    `supersample`: rays per pixel whose colours are averaged (1 = point sampling, see the module
    docstring); depth and primitive come from the pixel-centre ray whatever it is. Frames are mapped
    sequentially (`lax.map`) rather than vmapped: one frame's working set stays in the CPU cache,
    which is several times faster than one huge batch (launch/bench_render.py). Jitted per
    (height, width, supersample).
    """
    return _render_frames(scene, c2w, intrinsics, height, width, _check_supersample(supersample))


def render_dynamic_frames(scenes: Scene, c2w: Float[Array, "f 4 4"], intrinsics: Float[Array, "f 4"],
                          height: int, width: int, supersample: int = 1) -> Frame:
    """Renders F views where the scene itself changes per frame (every `scenes` leaf has a leading F)."""
    return _render_dynamic_frames(scenes, c2w, intrinsics, height, width, _check_supersample(supersample))
