"""MACO as the stream's cache policy, on the floor's tiny random-init student (tests/streaming/test_stream.py):
with no memory it streams exactly what the rolling cache streams, and with memory it compiles once."""

import functools

import jax
import numpy as np
from test_stream import INTRINSICS, fixture, held  # the floor's tiny student and key helper

from worldscape_jax.streaming import StreamSpec, cache_roles, init_stream, step
from worldscape_jax.streaming import maco
from worldscape_jax.streaming.policy import MEMORY, SINK

KEYS = ["w", "q", "q", "wd", "e", "e"]


def with_policy(spec: StreamSpec, config: maco.MacoConfig) -> StreamSpec:
    policy = maco.MacoPolicy(config, spec.dit.frames_per_chunk)
    return StreamSpec.create(spec.dit, spec.vae, spec.stream, spec.height, spec.width, policy=policy)


def run(spec, params, first, keys):
    """(final state, compilations of the step for this stream, video): jax.jit(step) wrappers share one
    cache across specs, so the compilations are counted as its growth."""
    jitted = jax.jit(step)
    before = jitted._cache_size()
    state = init_stream(params, spec, first, INTRINSICS, jax.random.key(4))
    videos = []
    for k in keys:
        state, frames = jitted(params, state, held(k))
        videos.append(np.asarray(frames))
    return state, jitted._cache_size() - before, np.concatenate(videos, axis=1)


@functools.lru_cache(maxsize=None)
def rolling_video():
    spec, params, first = fixture(cache_frames=3)  # the sink and the two newest frames
    return run(spec, params, first, KEYS)[2]


def test_a_stream_over_maco_without_memory_is_the_rolling_stream():
    spec, params, first = fixture(cache_frames=3)
    no_memory = with_policy(spec, maco.MacoConfig(local=2, budget=0, select=0))
    _, _, streamed = run(no_memory, params, first, KEYS)
    np.testing.assert_allclose(streamed, rolling_video(), atol=2e-5)  # the same keys, summed in another order


def test_a_stream_over_maco_compiles_once_and_its_memory_changes_the_video():
    spec, params, first = fixture(cache_frames=3)
    config = maco.MacoConfig(local=2, budget=2, select=1, tau_mdl=1.0)  # admit every chunk that leaves
    state, compilations, video = run(with_policy(spec, config), params, first, KEYS)
    assert compilations == 1 and np.all(np.isfinite(video))
    roles = np.asarray(cache_roles(state)[0])
    assert (roles == MEMORY).sum() == 2 and (roles == SINK).sum() == 1
    np.testing.assert_allclose(video[:, :4 * 3], rolling_video()[:, :4 * 3], atol=2e-5)  # no memory yet
    assert np.abs(video[:, -4:] - rolling_video()[:, -4:]).max() > 1e-4  # then the memory is attended to
