"""MACO, the memory-aware KV cache (paper §2.4, appendix A.2): sink ⊕ memory pool ⊕ local window.

Every slot holds one chunk: its per-layer un-rotated keys and values, its first latent frame, the
camera state C = (v, t) it was generated at (unit view direction, position), and a role (free, sink,
pool, local). The state has a fixed capacity of 1 + budget + local chunks and every update is jnp on
fixed shapes, so the stream step that calls it compiles once and never leaves the device.

* Sink: the first chunk, kept forever.
* Local window: the `local` most recent chunks.
* Admission (MDL gate): the chunk leaving the local window enters the pool only if its key vector
  is novel, S_mdl = max over pool entries of cos(key, key_i) < tau_mdl.
* Pruning: when the pool holds budget + 1 entries, farthest point sampling with
  d(i, j) = |t_i - t_j| + lambda |v_i - v_j|, seeded at the sink, keeps `budget` of them.
* Selection: for the pose of the chunk being generated, the `select` pool entries with the highest
  S = v_i . v_q - alpha |t_i - t_q| join the attention context.

Nothing moves when a chunk changes role: leaving the window, being admitted, being pruned only
relabel its slot, and each update writes one chunk (the new one) into a free slot. `context` gathers
the sink, the selected memory and the local window (in that order, memory and local by time) into a
`KVCache` of 1 + select + local chunks, the same size as a rolling cache of that many chunks.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from worldscape_jax.models.kv_cache import KVCache
from worldscape_jax.streaming.policy import EMPTY, LOCAL, MEMORY, SINK, CacheLayout

POSITIONS = ("fixed", "original")
_FAR = np.iinfo(np.int32).max


@dataclasses.dataclass(frozen=True)
class MacoConfig:
    """Sizes in chunks; the paper's Figure 7 setting is local 6, budget 4, select 2.

    tau_mdl: admission threshold on the gate's key cosine (see `key_similarity`); it depends on the model.
    alpha: selection penalty per unit of distance; lambda_: FPS weight of the view-direction distance
    (|v_i - v_j| is sqrt(2) for a quarter turn).
    positions: where a selected memory entry sits in RoPE time: "original" (its own frame index,
    relative to now) or "fixed" (the slots just before the local window, in time order, as if the
    window were `select` chunks longer). The default is "fixed": a student trained with a rolling
    window has only seen keys at those offsets, so memory there is in distribution; "original" keeps
    the true time gap, which only a student trained with MACO in its rollouts has seen. Measured on
    the revisit benchmark with the committed student (BENCHMARKS.md): the two differ by 0.04 dB and
    0.004 Memory Symmetry, within the spread over scenes, so "fixed" stays.
    """

    local: int = 6
    budget: int = 4
    select: int = 2
    tau_mdl: float = 0.7
    alpha: float = 0.5
    lambda_: float = 1.0
    positions: str = "fixed"

    def __post_init__(self):
        where = "MacoConfig (configs/student.py: maco)"
        if self.local < 1:
            raise ValueError(f"{where}: local must be >= 1 chunk, got {self.local}")
        if self.budget < 0 or not 0 <= self.select <= self.budget:
            raise ValueError(f"{where}: need budget >= 0 and 0 <= select <= budget, got budget={self.budget}, "
                             f"select={self.select}")
        if not -1.0 <= self.tau_mdl <= 1.0:
            raise ValueError(f"{where}: tau_mdl is a cosine threshold in [-1, 1], got {self.tau_mdl}")
        if self.alpha < 0 or self.lambda_ < 0:
            raise ValueError(f"{where}: alpha and lambda_ must be >= 0, got {self.alpha}, {self.lambda_}")
        if self.positions not in POSITIONS:
            raise ValueError(f"{where}: positions must be one of {POSITIONS}, got {self.positions!r}")

    @property
    def capacity(self) -> int:
        """Chunks held: sink, pool and local window."""
        return 1 + self.budget + self.local

    @property
    def context_chunks(self) -> int:
        """Chunks in the attention context: sink, selected memory and local window."""
        return 1 + self.select + self.local

    def rolling(self) -> "MacoConfig":
        """The ablation: a sink and a rolling window with the same number of context chunks, no memory."""
        return dataclasses.replace(self, local=self.local + self.select, budget=0, select=0)

    @classmethod
    def from_config(cls, cfg: Any) -> "MacoConfig":
        """From a mapping (an ml_collections ConfigDict section); `mode: rolling` gives `rolling()`."""
        values = dict(cfg)
        mode = values.pop("mode", "maco")
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"MacoConfig: unknown fields {sorted(unknown)} in the maco config section")
        config = cls(**values)
        if mode not in ("maco", "rolling"):
            raise ValueError(f"MacoConfig: mode must be 'maco' or 'rolling', got {mode!r}")
        return config.rolling() if mode == "rolling" else config


def config_section(mode: str = "maco") -> ml_collections.ConfigDict:
    """The student config's `maco` section: MacoConfig's defaults plus the mode ("maco" or "rolling")."""
    return ml_collections.ConfigDict({"mode": mode, **dataclasses.asdict(MacoConfig())})


@flax.struct.dataclass
class MacoState:
    """The cache: `capacity` chunk slots with their role, plus what the last update decided.

    frame, length: the first latent frame of each slot's chunk and how many frames it holds (a chunk may be
    shorter than frames_per_chunk: the sink of a stream that starts from one latent frame).
    left_frame, s_mdl, admitted, pruned_frame: the first frame of the chunk that left the local window
    in the last update (-1: none), its gate score, whether it entered the pool, and the first frame of
    the pool entry pruned (-1: none). They exist for the figures and the play page.
    """

    k: Float[Array, "l b n f t h d"]
    v: Float[Array, "l b n f t h d"]
    frame: Int[Array, "b n"]
    length: Int[Array, "b n"]
    view: Float[Array, "b n 3"]
    position: Float[Array, "b n 3"]
    role: Int[Array, "b n"]
    next_frame: Int[Array, ""]
    left_frame: Int[Array, "b"]
    s_mdl: Float[Array, "b"]
    admitted: Bool[Array, "b"]
    pruned_frame: Int[Array, "b"]

    @property
    def valid(self) -> Bool[Array, "b n"]:
        return self.role != EMPTY


def key_similarity(candidate: Float[Array, "f t h d"], others: Float[Array, "n f t h d"]) -> Float[Array, "n"]:
    """The gate's cosine between chunks: per head, the cosine of their first-layer keys over all tokens
    (the chunk's key vector), averaged over heads.

    Why the first layer's un-rotated token keys: they are a function of the chunk's own latents and
    camera input alone (no attention has mixed in the context yet), so a revisit of a view matches the
    first visit whatever the cache held at either time, and un-rotated keys carry no time. Token by
    token, because the cosine of aligned token keys falls as the view moves and reads as a proxy for
    reconstruction error; keys mean-pooled over tokens do not: on the tiny teacher's keys of a
    SynthWorld orbit their cosine is 0.93-0.99 for any pair of views, while this one is 0.75-0.77
    for a revisited view and about 0.5 for views 9 degrees or more apart. Heads are kept apart (their
    key spaces are unrelated), so each weighs the same.
    """
    dots = jnp.einsum("fthd,nfthd->nh", candidate.astype(jnp.float32), others.astype(jnp.float32))
    norm = lambda x: jnp.sqrt(jnp.sum(jnp.square(x.astype(jnp.float32)), axis=(-4, -3, -1)))
    return jnp.mean(dots / jnp.maximum(norm(candidate)[None] * norm(others), 1e-12), axis=-1)


def camera_state(c2w: Float[Array, "b 4 4"]) -> tuple[Float[Array, "b 3"], Float[Array, "b 3"]]:
    """C = (v, t): the unit view direction (OpenCV +z, the third column of c2w) and the position."""
    view = c2w[:, :3, 2]
    return view / jnp.linalg.norm(view, axis=-1, keepdims=True), c2w[:, :3, 3]


def view_score(view: Float[Array, "*n 3"], position: Float[Array, "*n 3"], query_view: Float[Array, "3"],
               query_position: Float[Array, "3"], alpha: float) -> Float[Array, "*n"]:
    """Selection score S = v_i . v_q - alpha |t_i - t_q|: aligned, nearby views first."""
    return view @ query_view - alpha * jnp.linalg.norm(position - query_position, axis=-1)


def pose_distance(view: Float[Array, "n 3"], position: Float[Array, "n 3"], lambda_: float) -> Float[Array, "n n"]:
    """FPS distance d(i, j) = |t_i - t_j| + lambda |v_i - v_j| between all pairs."""
    norm = lambda x: jnp.sqrt(jnp.sum(jnp.square(x[:, None] - x[None]), axis=-1))
    return norm(position) + lambda_ * norm(view)


def farthest_point_sampling(dist: Float[Array, "n n"], candidates: Bool[Array, "n"], seed_dist: Float[Array, "n"],
                            num_keep: int) -> Bool[Array, "n"]:
    """Greedy farthest point sampling: keeps up to `num_keep` candidates, each the farthest from those
    kept so far and from the seed (the distance of every point to it is `seed_dist`). Ties go to the
    lowest index. Fixed shapes: a fori_loop of num_keep picks.
    """

    def pick(_, carry):
        kept, nearest = carry
        open_ = candidates & ~kept
        best = jnp.argmax(jnp.where(open_, nearest, -jnp.inf))
        take = open_[best]
        kept = kept.at[best].set(kept[best] | take)
        nearest = jnp.where(take, jnp.minimum(nearest, dist[best]), nearest)
        return kept, nearest

    kept = jnp.zeros_like(candidates)
    return jax.lax.fori_loop(0, num_keep, pick, (kept, seed_dist.astype(jnp.float32)))[0]


def mdl_gate(candidate: Float[Array, "f t h d"], others: Float[Array, "n f t h d"], in_pool: Bool[Array, "n"],
             tau_mdl: float) -> tuple[Float[Array, ""], Bool[Array, ""]]:
    """S_mdl = max of `key_similarity` against the pool's entries (-inf for an empty pool); admit if < tau."""
    s_mdl = jnp.max(jnp.where(in_pool, key_similarity(candidate, others), -jnp.inf))
    return s_mdl, s_mdl < tau_mdl


def _retire_oldest_local(role, frame, view, position, first_layer_k, config: MacoConfig):
    """One example: the oldest local chunk leaves a full window, is gated, and the pool is pruned."""
    slots = jnp.arange(role.shape[0])
    is_local = role == LOCAL
    leaves = jnp.sum(is_local) >= config.local
    oldest = jnp.argmin(jnp.where(is_local, frame, _FAR))
    leaving = leaves & (slots == oldest)
    if config.budget == 0:
        role = jnp.where(leaving, EMPTY, role)
        return role, jnp.where(leaves, frame[oldest], -1), jnp.float32(-jnp.inf), jnp.bool_(False), jnp.int32(-1)
    s_mdl, admit = mdl_gate(first_layer_k[oldest], first_layer_k, role == MEMORY, config.tau_mdl)
    admit = admit & leaves
    role = jnp.where(leaving, jnp.where(admit, MEMORY, EMPTY), role)
    in_pool = role == MEMORY
    dist = pose_distance(view, position, config.lambda_)
    keep = farthest_point_sampling(dist, in_pool, dist[jnp.argmax(role == SINK)], config.budget)
    pruned = in_pool & ~keep & (jnp.sum(in_pool) > config.budget)
    role = jnp.where(pruned, EMPTY, role)
    pruned_frame = jnp.where(jnp.any(pruned), frame[jnp.argmax(pruned)], -1)
    return role, jnp.where(leaves, frame[oldest], -1), s_mdl, admit, pruned_frame


def select_memory(state: MacoState, query_pose: Float[Array, "b 4 4"], config: MacoConfig
                  ) -> tuple[Int[Array, "b s"], Bool[Array, "b s"]]:
    """Slots of the `select` best pool entries for the query pose, in time order, and which are real.

    With fewer pool entries than `select` the missing picks are invalid and come first, so the valid
    ones sit next to the local window.
    """
    query_view, query_position = camera_state(query_pose)
    score = jax.vmap(view_score, in_axes=(0, 0, 0, 0, None))(state.view, state.position, query_view,
                                                           query_position, config.alpha)
    in_pool = state.role == MEMORY
    if config.select == 0:
        empty = jnp.zeros((in_pool.shape[0], 0), jnp.int32)
        return empty, empty.astype(bool)
    _, slots = jax.lax.top_k(jnp.where(in_pool, score, -jnp.inf), config.select)
    valid = jnp.take_along_axis(in_pool, slots, axis=1)
    order = jnp.argsort(jnp.where(valid, jnp.take_along_axis(state.frame, slots, axis=1), -_FAR), axis=1)
    return jnp.take_along_axis(slots, order, axis=1), jnp.take_along_axis(valid, order, axis=1)


def local_window(state: MacoState, config: MacoConfig) -> tuple[Int[Array, "b w"], Bool[Array, "b w"]]:
    """Slots of the local window, oldest first; while it fills, the missing ones are invalid and first."""
    is_local = state.role == LOCAL
    order = jnp.argsort(jnp.where(is_local, state.frame, -_FAR), axis=1)[:, -config.local:]
    return order, jnp.take_along_axis(is_local, order, axis=1)


@dataclasses.dataclass(frozen=True)
class MacoPolicy:
    """The cache-policy protocol (init, context, update) over MACO; hashable, so jit can close over it."""

    config: MacoConfig
    frames_per_chunk: int

    def init(self, layout: CacheLayout) -> MacoState:
        """An empty cache: every slot free."""
        n, f = self.config.capacity, self.frames_per_chunk
        num_layers, batch, tokens_per_frame = layout.num_layers, layout.batch, layout.tokens_per_frame
        num_heads, head_dim, dtype = layout.num_heads, layout.head_dim, layout.dtype
        zeros = lambda *shape, dt=jnp.float32: jnp.zeros(shape, dt)
        kv = (num_layers, batch, n, f, tokens_per_frame, num_heads, head_dim)
        return MacoState(
            k=zeros(*kv, dt=dtype), v=zeros(*kv, dt=dtype), frame=zeros(batch, n, dt=jnp.int32),
            length=zeros(batch, n, dt=jnp.int32),
            view=zeros(batch, n, 3), position=zeros(batch, n, 3),
            role=zeros(batch, n, dt=jnp.int32),
            next_frame=jnp.int32(0), left_frame=jnp.full((batch,), -1, jnp.int32), s_mdl=zeros(batch),
            admitted=zeros(batch, dt=bool), pruned_frame=jnp.full((batch,), -1, jnp.int32))

    def update(self, state: MacoState, k: Float[Array, "l b f t h d"], v: Float[Array, "l b f t h d"],
               first_frame: Int[Array, ""] | int, pose: Float[Array, "b 4 4"]) -> MacoState:
        """Inserts a clean chunk (un-rotated k, v) made at `pose`: the first one becomes the sink.

        A chunk of fewer than frames_per_chunk frames (the first latent frame alone, say) fills its slot's
        first frames; the rest stay out of the context.
        """
        self._check_chunk(state, k, v, pose)
        num_frames = k.shape[2]
        pad = [(0, 0), (0, 0), (0, self.frames_per_chunk - num_frames)] + [(0, 0)] * 3
        k, v = jnp.pad(k, pad), jnp.pad(v, pad)
        retire = jax.vmap(lambda *a: _retire_oldest_local(*a, self.config))
        role, left, s_mdl, admitted, pruned = retire(state.role, state.frame, state.view, state.position,
                                                     state.k[0])
        has_sink = jnp.any(role == SINK, axis=1)
        target = jnp.argmax(role == EMPTY, axis=1)
        rows = jnp.arange(role.shape[0])
        view, position = camera_state(pose.astype(jnp.float32))
        first_frame = jnp.asarray(first_frame, jnp.int32)
        return state.replace(
            k=state.k.at[:, rows, target].set(k.astype(state.k.dtype)),
            v=state.v.at[:, rows, target].set(v.astype(state.v.dtype)),
            frame=state.frame.at[rows, target].set(first_frame),
            length=state.length.at[rows, target].set(num_frames),
            view=state.view.at[rows, target].set(view), position=state.position.at[rows, target].set(position),
            role=role.at[rows, target].set(jnp.where(has_sink, LOCAL, SINK)),
            next_frame=first_frame + num_frames,
            left_frame=left, s_mdl=s_mdl, admitted=admitted, pruned_frame=pruned)

    def context_slots(self, state: MacoState, query_pose: Float[Array, "b 4 4"]
                      ) -> tuple[Int[Array, "b c"], Bool[Array, "b c"], Bool[Array, "b c"]]:
        """Slots of sink ⊕ selected memory ⊕ local window, which are real, and which are memory."""
        sink = jnp.argmax(state.role == SINK, axis=1)[:, None]
        memory, memory_valid = select_memory(state, query_pose, self.config)
        local, local_valid = local_window(state, self.config)
        slots = jnp.concatenate([sink, memory, local], axis=1)
        valid = jnp.concatenate([jnp.any(state.role == SINK, axis=1)[:, None], memory_valid, local_valid], axis=1)
        is_memory = jnp.zeros(slots.shape, bool).at[:, 1:1 + self.config.select].set(True)
        return slots, valid, is_memory

    def context(self, state: MacoState, query_pose: Float[Array, "b 4 4"]) -> KVCache:
        """The KV cache the next chunk attends to: (1 + select + local) * frames_per_chunk frame slots."""
        c, f = self.config, self.frames_per_chunk
        slots, valid, is_memory = self.context_slots(state, query_pose)
        rows = jnp.arange(slots.shape[0])[:, None]
        first = jnp.take_along_axis(state.frame, slots, axis=1)
        if c.positions == "fixed":
            before_window = state.next_frame - (c.local + c.select - jnp.arange(c.context_chunks) + 1) * f
            first = jnp.where(is_memory, before_window[None], first)
        frame_index = (first[:, :, None] + jnp.arange(f)).reshape(first.shape[0], -1)
        length = jnp.take_along_axis(state.length, slots, axis=1)
        valid = (valid[:, :, None] & (jnp.arange(f) < length[:, :, None])).reshape(first.shape[0], -1)
        flat = lambda x: x.reshape(x.shape[0], x.shape[1], -1, *x.shape[4:])
        return KVCache(k=flat(state.k[:, rows, slots]), v=flat(state.v[:, rows, slots]),
                       frame_index=frame_index, valid=valid)

    def roles(self, state: MacoState) -> Int[Array, "b s"]:
        """What each frame slot of the state holds (EMPTY, SINK, LOCAL, MEMORY), for figures and the play page."""
        held = jnp.arange(self.frames_per_chunk) < state.length[:, :, None]
        return jnp.where(held, state.role[:, :, None], EMPTY).reshape(state.role.shape[0], -1)

    def _check_chunk(self, state: MacoState, k, v, pose) -> None:
        expected = state.k.shape[:2] + state.k.shape[4:]
        if k.shape != v.shape or k.shape[:2] + k.shape[3:] != expected or not 1 <= k.shape[2] <= self.frames_per_chunk:
            raise ValueError(f"MACO update: k and v must be [L, B, F, T, H, Dh] with (L, B, T, H, Dh) = {expected} "
                             f"and 1 <= F <= frames_per_chunk={self.frames_per_chunk}, got {k.shape} and {v.shape}")
        if pose.shape != (state.k.shape[1], 4, 4):
            raise ValueError(f"MACO update: pose must be c2w [B, 4, 4] = {(state.k.shape[1], 4, 4)}, got {pose.shape}")
