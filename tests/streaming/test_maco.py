"""MACO against brute-force NumPy (FPS, selection, gate), its invariants on generated trajectories, one
compilation for a long stream, equality with the rolling cache at budget 0, and attention over its context."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worldscape_jax.geometry.actions import yaw_pitch_rotation
from worldscape_jax.geometry.cameras import make_pose
from worldscape_jax.models.rope import apply_rope
from worldscape_jax.streaming import maco
from worldscape_jax.streaming.policy import CacheLayout
from worldscape_jax.streaming.rolling import RollingPolicy

LAYERS, BATCH, TOKENS, HEADS, DIM = 2, 2, 3, 2, 4
LAYOUT = CacheLayout(LAYERS, BATCH, TOKENS, HEADS, DIM)


def random_poses(rng: np.random.Generator, n: int, spread: float = 2.0) -> np.ndarray:
    yaw, pitch = rng.uniform(-np.pi, np.pi, n), rng.uniform(-0.5, 0.5, n)
    return make_pose(yaw_pitch_rotation(yaw, pitch), rng.uniform(-spread, spread, (n, 3))).astype(np.float32)


def np_fps(dist, candidates, seed_dist, num_keep):
    kept, nearest = set(), seed_dist.astype(np.float64).copy()
    for _ in range(num_keep):
        open_ = [i for i in range(len(dist)) if candidates[i] and i not in kept]
        if not open_:
            break
        best = max(open_, key=lambda i: (nearest[i], -i))
        kept.add(best)
        nearest = np.minimum(nearest, dist[best])
    return kept


def np_pose_distance(views, positions, lambda_):
    n = len(views)
    return np.array([[np.linalg.norm(positions[i] - positions[j]) + lambda_ * np.linalg.norm(views[i] - views[j])
                      for j in range(n)] for i in range(n)])


@pytest.mark.parametrize("seed", range(6))
def test_farthest_point_sampling_matches_numpy_greedy_and_is_within_twice_the_best_spread(seed):
    rng = np.random.default_rng(seed)
    n, keep = 7, 4
    c2w = random_poses(rng, n + 1)
    views, positions = c2w[:, :3, 2], c2w[:, :3, 3]
    dist = np_pose_distance(views, positions, lambda_=0.7)
    candidates = rng.random(n + 1) < 0.8
    candidates[0] = False  # point 0 is the seed (the sink)
    got = maco.farthest_point_sampling(maco.pose_distance(jnp.asarray(views), jnp.asarray(positions), 0.7),
                                       jnp.asarray(candidates), jnp.asarray(dist[0]), keep)
    want = np_fps(dist, candidates, dist[0], keep)
    assert set(np.flatnonzero(np.asarray(got))) == want
    # Greedy max-min dispersion is a 2-approximation: compare with every subset of the same size.
    import itertools
    spread = lambda s: min(dist[i, j] for i, j in itertools.combinations([0, *s], 2))
    best = max(spread(s) for s in itertools.combinations(np.flatnonzero(candidates), len(want)))
    assert spread(sorted(want)) >= 0.5 * best - 1e-6


def state_with_pool(rng, config: maco.MacoConfig, roles: np.ndarray, c2w: np.ndarray) -> maco.MacoState:
    """A state whose slots have the given roles and poses (keys irrelevant), for selection tests."""
    policy = maco.MacoPolicy(config, frames_per_chunk=1)
    state = policy.init(CacheLayout(LAYERS, roles.shape[0], TOKENS, HEADS, DIM))
    view, position = c2w[..., :3, 2], c2w[..., :3, 3]
    frames = np.stack([rng.permutation(roles.shape[1]) for _ in range(roles.shape[0])]).astype(np.int32)
    return state.replace(role=jnp.asarray(roles, jnp.int32), view=jnp.asarray(view), position=jnp.asarray(position),
                         frame=jnp.asarray(frames), next_frame=jnp.int32(roles.shape[1]))


@pytest.mark.parametrize("seed", range(6))
def test_selection_takes_the_best_scored_pool_entries_like_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    config = maco.MacoConfig(local=2, budget=6, select=3, alpha=0.4)
    n = config.capacity
    pool_sizes = [6, int(rng.integers(0, 6))]  # a full pool, and one that may hold fewer than `select`
    roles = np.stack([rng.permutation([maco.SINK] + [maco.MEMORY] * p + [maco.LOCAL] * 2 + [maco.EMPTY] * (6 - p))
                      for p in pool_sizes])
    c2w = random_poses(rng, BATCH * n).reshape(BATCH, n, 4, 4)
    query = random_poses(rng, BATCH)
    state = state_with_pool(rng, config, roles, c2w)
    slots, valid = maco.select_memory(state, jnp.asarray(query), config)
    for b in range(BATCH):
        pool = [i for i in range(n) if roles[b, i] == maco.MEMORY]
        score = {i: c2w[b, i, :3, 2] @ query[b, :3, 2] - 0.4 * np.linalg.norm(c2w[b, i, :3, 3] - query[b, :3, 3])
                 for i in pool}
        want = sorted(pool, key=lambda i: -score[i])[:config.select]
        got = np.asarray(slots[b])[np.asarray(valid[b])]
        assert set(got) == set(want)
        assert list(np.asarray(state.frame[b])[got]) == sorted(np.asarray(state.frame[b])[got])  # time order
        assert np.asarray(valid[b]).sum() == min(len(pool), config.select)


def np_key_cosine(k_a, k_b):
    """Mean over heads of the cosine between the chunks' first-layer keys over all tokens (k: [L, F, T, H, D])."""
    a, b = np.moveaxis(k_a[0], 2, 0).reshape(HEADS, -1), np.moveaxis(k_b[0], 2, 0).reshape(HEADS, -1)
    return np.mean([a[h] @ b[h] / np.linalg.norm(a[h]) / np.linalg.norm(b[h]) for h in range(HEADS)])


# ---- streams -------------------------------------------------------------------------------------------

CONFIGS = {
    "paper": maco.MacoConfig(local=3, budget=3, select=2, tau_mdl=0.6, positions="fixed"),
    "original": maco.MacoConfig(local=2, budget=2, select=1, tau_mdl=0.3, positions="original"),
    "no_pool": maco.MacoConfig(local=2, budget=0, select=0),
}


@functools.lru_cache(maxsize=None)
def jitted_step(name: str, frames_per_chunk: int):
    """One jitted stream step (context for the query pose, then the update) and a list of its traces."""
    policy = maco.MacoPolicy(CONFIGS[name], frames_per_chunk)
    traces = []

    def step(state, k, v, first_frame, pose):
        traces.append(first_frame)
        return policy.update(state, k, v, first_frame, pose), policy.context(state, pose)

    return policy, jax.jit(step), traces


def chunk_keys(rng, num_chunks, frames, repeat_prob):
    """Random chunk keys/values [N, L, B, F, T, H, D]; some chunks repeat an earlier chunk's keys exactly."""
    k = rng.normal(size=(num_chunks, LAYERS, BATCH, frames, TOKENS, HEADS, DIM)).astype(np.float32) + 0.5
    for i in range(1, num_chunks):
        if rng.random() < repeat_prob:
            k[i] = k[rng.integers(0, i)]
    return k, rng.normal(size=k.shape).astype(np.float32)


def walk(rng, num_chunks):
    """A batch of random walks: c2w [N, B, 4, 4]."""
    yaw = np.cumsum(rng.normal(0, 0.6, (num_chunks, BATCH)), axis=0)
    xz = np.cumsum(rng.normal(0, 0.3, (num_chunks, BATCH, 2)), axis=0)
    position = np.stack([xz[..., 0], np.zeros_like(yaw), xz[..., 1]], -1)
    return make_pose(yaw_pitch_rotation(yaw, np.zeros_like(yaw)), position).astype(np.float32)


def run_stream(name, num_chunks, seed, frames=1, check=None):
    policy, step, _ = jitted_step(name, frames)
    rng = np.random.default_rng(seed)
    ks, vs = chunk_keys(rng, num_chunks, frames, repeat_prob=0.3)
    poses = walk(rng, num_chunks)
    state = policy.init(LAYOUT)
    for i in range(num_chunks):
        new, context = step(state, ks[i], vs[i], jnp.int32(i * frames), poses[i])
        if check is not None:
            check(policy, state, new, context, ks, vs, poses, i)
        state = new
    return policy, state, ks, vs


def check_invariants(policy, before, state, context, ks, vs, poses, i):
    c, f = policy.config, policy.frames_per_chunk
    role, frame = np.asarray(state.role), np.asarray(state.frame)
    for b in range(BATCH):
        assert (role[b] == maco.MEMORY).sum() <= c.budget
        assert (role[b] == maco.LOCAL).sum() == min(i, c.local)
        sink = np.flatnonzero(role[b] == maco.SINK)
        assert len(sink) == 1 and frame[b, sink[0]] == 0
        np.testing.assert_array_equal(np.asarray(state.k)[:, b, sink[0]], ks[0][:, b])
        valid_frames = frame[b, role[b] != maco.EMPTY]
        assert len(set(valid_frames)) == len(valid_frames)
        local = sorted(frame[b, role[b] == maco.LOCAL])
        assert local == [f * j for j in range(max(1, i + 1 - c.local), i + 1)]  # the newest chunks
        for slot in np.flatnonzero(role[b] != maco.EMPTY):  # every slot still holds its own chunk's keys
            np.testing.assert_array_equal(np.asarray(state.k)[:, b, slot], ks[frame[b, slot] // f][:, b])


@settings(max_examples=6, deadline=None)
@given(st.sampled_from(sorted(CONFIGS)), st.integers(1, 16), st.integers(0, 2 ** 31 - 1), st.sampled_from([1, 2]))
def test_generated_streams_keep_budget_sink_and_unique_frames(name, num_chunks, seed, frames):
    run_stream(name, num_chunks, seed, frames, check=check_invariants)


def check_gate(policy, before, state, context, ks, vs, poses, i):
    role, frame = np.asarray(before.role), np.asarray(before.frame)
    for b in range(BATCH):
        local = np.flatnonzero(role[b] == maco.LOCAL)
        if len(local) < policy.config.local:
            assert state.left_frame[b] == -1
            continue
        leaving = ks[frame[b, local].min()][:, b]
        pool = [ks[frame[b, s]][:, b] for s in np.flatnonzero(role[b] == maco.MEMORY)]
        s_mdl = max((np_key_cosine(leaving, p) for p in pool), default=-np.inf)
        assert state.left_frame[b] == frame[b, local].min()
        np.testing.assert_allclose(float(state.s_mdl[b]), s_mdl, atol=1e-5)
        assert bool(state.admitted[b]) == (s_mdl < policy.config.tau_mdl)


@pytest.mark.parametrize("name", ["paper", "original"])
def test_gate_matches_numpy_cosine_of_first_layer_keys(name):
    _, state, _, _ = run_stream(name, 25, seed=7, check=check_gate)
    assert np.all(np.asarray(state.role) != maco.EMPTY)  # the stream filled the pool


def test_a_500_chunk_stream_compiles_once():
    *_, traces = jitted_step("paper", 1)
    policy, state, _, _ = run_stream("paper", 500, seed=3)
    assert len(traces) == 1  # over this test and any earlier stream of the same policy
    assert int(state.next_frame) == 500


@pytest.mark.parametrize("sink_frames", [2, 1])  # 1: the stream starts from one latent frame, chunks have 2
def test_budget_zero_holds_exactly_what_the_rolling_cache_holds(sink_frames):
    frames = 2
    policy, step, _ = jitted_step("no_pool", frames)
    local = CONFIGS["no_pool"].local
    rng = np.random.default_rng(0)
    ks, vs = chunk_keys(rng, 10, frames, repeat_prob=0.0)
    ks[0, :, :, sink_frames:] = vs[0, :, :, sink_frames:] = 0.0  # MACO pads a short chunk with zeros
    poses = walk(rng, 10)
    state = policy.init(LAYOUT)
    rolling_policy = RollingPolicy(slots=sink_frames + local * frames, sink=sink_frames)
    rolling = rolling_policy.init(LAYOUT)
    first = 0
    for i in range(10):  # the context for chunk i against the rolling cache before chunk i goes in
        size = sink_frames if i == 0 else frames
        state, context = step(state, ks[i][:, :, :size], vs[i][:, :, :size], jnp.int32(first), poses[i])
        for b in range(BATCH):
            got, want = sorted_frames(context, b), sorted_frames(rolling, b)
            assert got[0] == want[0]
            for x, y in zip(got[1:], want[1:]):
                np.testing.assert_array_equal(x, y)
        rolling = rolling_policy.update(rolling, ks[i][:, :, :size], vs[i][:, :, :size], first, poses[i])
        first += size
    assert got[0][0] == 0 and len(got[0]) == sink_frames + local * frames


def sorted_frames(cache, b):
    """(frame indices, keys, values) of the valid slots of one example, in frame order."""
    valid = np.asarray(cache.valid[b])
    frames = np.asarray(cache.frame_index[b])[valid]
    order = np.argsort(frames)
    pick = lambda x: np.asarray(x)[:, b][:, valid][:, order]
    return list(frames[order]), pick(cache.k), pick(cache.v)


def np_attention(q, k, v):
    logits = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(q.shape[-1])
    p = np.exp(logits - logits.max(-1, keepdims=True))
    return np.einsum("hqk,khd->qhd", p / p.sum(-1, keepdims=True), v)


@pytest.mark.parametrize("name", ["paper", "original"])
def test_attention_over_the_context_equals_attention_over_hand_gathered_chunks(name):
    """Rotate the context's keys at its positions and attend; then gather sink, the best-scored pool entries
    and the local window by hand, place them in RoPE time by the config's rule, and attend in NumPy."""
    policy, state, ks, vs = run_stream(name, 20, seed=11)
    c, query_pose = policy.config, walk(np.random.default_rng(5), 1)[0]
    context = policy.context(state, jnp.asarray(query_pose))
    now = int(state.next_frame)
    q = np.random.default_rng(6).normal(size=(BATCH, 5, HEADS, DIM)).astype(np.float32)
    grid = lambda t: np.stack([t, np.zeros_like(t), np.arange(len(t)) % 2], -1)
    for b in range(BATCH):
        role, frame = np.asarray(state.role[b]), np.asarray(state.frame[b])
        pool = np.flatnonzero(role == maco.MEMORY)
        score = lambda s: (np.asarray(state.view[b, s]) @ query_pose[b, :3, 2]
                           - c.alpha * np.linalg.norm(np.asarray(state.position[b, s]) - query_pose[b, :3, 3]))
        memory = sorted(sorted(pool, key=lambda s: -score(s))[:c.select], key=lambda s: frame[s])
        local = sorted(np.flatnonzero(role == maco.LOCAL), key=lambda s: frame[s])
        chunks = [int(frame[np.flatnonzero(role == maco.SINK)[0]])] + [int(frame[s]) for s in memory + local]
        times = list(chunks)
        if c.positions == "fixed":
            times[1:1 + len(memory)] = [now - (c.local + len(memory) - j) for j in range(len(memory))]
        k = np.concatenate([ks[f][:, b, 0] for f in chunks], axis=1)  # [L, T*chunks, H, D], one frame per chunk
        v = np.concatenate([vs[f][:, b, 0] for f in chunks], axis=1)
        positions = grid(np.repeat(np.asarray(times) - now, TOKENS))
        valid = np.asarray(context.valid[b])
        ctx_positions = grid(np.repeat(np.asarray(context.frame_index[b])[valid] - now, TOKENS))
        for layer in range(LAYERS):
            want = np_attention(q[b], np.asarray(apply_rope(jnp.asarray(k[layer][None]), positions[None]))[0], v[layer])
            ctx_k = np.asarray(context.k[layer, b])[valid].reshape(-1, HEADS, DIM)
            ctx_v = np.asarray(context.v[layer, b])[valid].reshape(-1, HEADS, DIM)
            ctx_k = np.asarray(apply_rope(jnp.asarray(ctx_k[None]), ctx_positions[None]))[0]
            np.testing.assert_allclose(np_attention(q[b], ctx_k, ctx_v), want, atol=1e-5)


def test_bad_inputs_give_clear_errors():
    with pytest.raises(ValueError, match="select <= budget"):
        maco.MacoConfig(budget=1, select=2)
    with pytest.raises(ValueError, match="positions"):
        maco.MacoConfig(positions="relative")
    with pytest.raises(ValueError, match="unknown fields"):
        maco.MacoConfig.from_config({"locals": 3})
    policy = maco.MacoPolicy(maco.MacoConfig(), frames_per_chunk=1)
    state = policy.init(LAYOUT)
    k = jnp.zeros((LAYERS, BATCH, 2, TOKENS, HEADS, DIM))
    with pytest.raises(ValueError, match="frames_per_chunk=1"):
        policy.update(state, k, k, 0, jnp.tile(jnp.eye(4), (BATCH, 1, 1)))


def test_rolling_mode_has_the_same_number_of_context_chunks():
    config = maco.MacoConfig.from_config(maco.config_section("rolling"))
    paper = maco.MacoConfig.from_config(maco.config_section())
    assert (paper.local, paper.budget, paper.select) == (6, 4, 2)  # the paper's Figure 7 setting
    assert (config.budget, config.local, config.context_chunks) == (0, 8, paper.context_chunks)
