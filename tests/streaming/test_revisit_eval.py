"""The revisit benchmark's code path on the committed tiny student, over a 4-chunk path: the student streamed
over a cache policy is the student's own rollout, a full cache equals a rolling cache that holds
everything, revisit pairs find the first visit, and every figure is there and finite."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from worldscape_jax.geometry.actions import actions_to_c2w
from worldscape_jax.inference.loading import load_exported, load_vae
from worldscape_jax.inference.pixels import to_uint8, to_unit_range
from worldscape_jax.streaming import RollingPolicy, revisit, revisit_eval, student_stream
from worldscape_jax.streaming.maco import MacoConfig, MacoPolicy
from worldscape_jax.training.stages import student

CHUNKS = 5  # the first frame and 4 generated chunks: the student's 5-slot cache never evicts
SEED = 3


@functools.lru_cache(maxsize=None)
def streamed():
    params, config = load_exported("asset:student_tiny")
    vae = load_vae(config.vae.checkpoint, config.vae.preset)
    seed = revisit.heldout_seed(0)
    clip = revisit.render_clip(seed, revisit.revisit_path("reversed_orbit", CHUNKS, seed),
                               config.data.height, config.data.width)
    rolling = MacoPolicy(MacoConfig(local=CHUNKS - 1, budget=0, select=0).rolling(), 1)
    streams = {"full": student_stream.make_stream(params, config, vae, RollingPolicy(slots=CHUNKS, sink=1)),
               "rolling": student_stream.make_stream(params, config, vae, rolling)}
    first = to_unit_range(clip["video"][:1])[None]
    videos = revisit_eval.stream_along(streams, first, clip["intrinsics"][0], clip["c2w"], 4, SEED)
    return params, config, vae, clip, first, videos


def student_rollout(params, config, vae, first, clip):
    """`student.generate` along the clip's path, jitted whole as launch/generate.py runs it (eager takes 2x)."""
    run = jax.jit(lambda p, v, f, c, k: student.generate(p, config, (v, vae[1]), f, c, k, jax.random.key(SEED)))
    return run(params, vae[0], first, jnp.asarray(clip["c2w"])[None], jnp.asarray(clip["intrinsics"])[None])


def test_the_stream_over_a_cache_policy_is_the_students_rollout():
    params, config, vae, clip, first, videos = streamed()
    reference = student_rollout(params, config, vae, first, clip)
    video, fps = videos["full"]
    assert video.shape == clip["video"].shape and np.isfinite(fps) and fps > 0
    # Frame 0 is the given image in the stream and its VAE reconstruction in the rollout; after it, streamed
    # and whole-clip decoding of the same latents agree to rounding.
    assert np.abs(video[1:].astype(int) - to_uint8(reference[0, 1:]).astype(int)).max() <= 1


def with_reference(config, reference: str, noise: float, blur: int):
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.student.reference, config.student.reference_noise, config.student.reference_blur = reference, noise, blur
    return config


@pytest.mark.slow  # ~1-1.5 min: a setting the committed student (reference "none") does not use
def test_a_noised_and_blurred_newest_frame_stream_conditions_as_its_rollout_trained():
    """reference newest_frame with reference_noise and reference_blur: the stream and the Self-Forcing rollout
    low-pass and noise each chunk's reference the same way (the same draw per chunk), so they stay equal, and
    the two settings reach the frames (the plain newest-frame stream, streamed only, is the baseline). Each
    setting alone changes the conditioning both of them build (`student.chunk_conditions`)."""
    params, config, vae, clip, first, _ = streamed()
    variants = {"plain": with_reference(config, "newest_frame", 0.0, 1),
                "noised_and_blurred": with_reference(config, "newest_frame", 0.4, 4)}
    videos = {}
    for name, variant in variants.items():
        stream = student_stream.make_stream(params, variant, vae, RollingPolicy(slots=CHUNKS, sink=1))
        videos[name] = revisit_eval.stream_along({"s": stream}, first, clip["intrinsics"][0], clip["c2w"], 4, SEED)["s"][0]
    rollout = student_rollout(params, variants["noised_and_blurred"], vae, first, clip)
    assert np.abs(videos["noised_and_blurred"][1:].astype(int) - to_uint8(rollout[0, 1:]).astype(int)).max() <= 1
    assert np.abs(videos["noised_and_blurred"].astype(int) - videos["plain"].astype(int)).max() > 2  # beyond rounding

    window = (jnp.asarray(clip["c2w"][None, :5]), jnp.asarray(clip["intrinsics"][None, :5]))
    settings = ((0.0, 1), (0.4, 1), (0.0, 4))  # plain, noised, blurred: one compile for the three

    @jax.jit
    def conditions(vae_params, ref, c2w, intrinsics, rng):
        return [student.chunk_conditions((vae_params, vae[1]), with_reference(config, "newest_frame", noise, blur),
                                         ref, c2w, intrinsics, rng=rng)[0] for noise, blur in settings]

    plain, *changed = conditions(vae[0], first, *window, jax.random.key(SEED))
    for setting, cond in zip(settings[1:], changed):
        assert float(jnp.abs(cond - plain).max()) > 1e-2, setting


def test_a_full_cache_equals_a_rolling_cache_that_holds_everything():
    *_, videos = streamed()
    assert np.abs(videos["full"][0].astype(int) - videos["rolling"][0].astype(int)).max() <= 1


def test_the_figures_of_a_stream_are_all_there_and_finite():
    *_, clip, _, videos = streamed()
    pairs = [(4, 0)]  # the reversed orbit's last chunk is back at its first pose
    figures = revisit_eval.revisit_metrics(videos["full"][0], clip["video"], clip["c2w"], clip["intrinsics"][0],
                                           pairs, 4)
    assert set(revisit_eval.METRICS) - {"fps"} <= set(figures)
    assert all(np.isfinite(v) for v in figures.values())
    gap = np.mean((videos["full"][0][16].astype(float) - videos["full"][0][0].astype(float)) ** 2)
    np.testing.assert_allclose(figures["psnr_first_visit"], 10 * np.log10(255.0**2 / gap), rtol=1e-4)


def test_revisit_pairs_find_the_first_visit_out_of_the_windows_reach():
    chunks = actions_to_c2w("w*6,s*6")[::4]  # 13 chunk poses, out 6 steps and back the same way
    pairs = revisit_eval.revisit_pairs(chunks, min_gap=3, max_distance=0.05)
    assert pairs == [(i, 12 - i) for i in range(8, 13)]  # i = 7 would pair with 5, inside the gap
    assert revisit_eval.revisit_pairs(chunks, min_gap=3, max_distance=0.3)[0] == (3, 0)  # 0.24 away: near enough
