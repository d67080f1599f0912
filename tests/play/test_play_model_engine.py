"""The student's stream step behind the play server: a tiny random-init model (the machinery, not the picture)."""

from __future__ import annotations

import asyncio
import functools
import io

import jax
import numpy as np
import pytest
from PIL import Image

from play_client import connect, play_chunk, run_with_client, start_scene
from worldscape_jax import streaming
from worldscape_jax.configs import dit as dit_configs
from worldscape_jax.models import vae as vae_lib
from worldscape_jax.models.dit import DiTConfig
from worldscape_jax.models.vae_config import get_vae_config
from worldscape_jax.play.model_engine import ModelEngine, init_dit_params
from worldscape_jax.play.scene_start import upload_start
from worldscape_jax.play.server import SESSIONS
from worldscape_jax.streaming.maco import MacoConfig, MacoPolicy

SIZE = 32


@functools.lru_cache(maxsize=None)
def tiny_engine() -> ModelEngine:
    """2 DiT layers at 32x32, a cache of the sink + 2 frames; random weights."""
    cfg = dit_configs.get_config("tiny,control,camera")
    cfg.num_layers = 2
    dit_config, vae_config = DiTConfig.from_config(cfg), get_vae_config("tiny")
    spec = streaming.StreamSpec.create(dit_config, vae_config, streaming.StreamConfig(cache_frames=3, sink_frames=1),
                                       SIZE, SIZE)
    params = {"dit": init_dit_params(spec, seed=0), "vae": vae_lib.init_params(vae_config, 0)}
    return ModelEngine(params, spec, seed=0, label="random init (test)")


@pytest.mark.slow
def test_the_model_streams_through_the_server_with_its_memory_on_the_map(tmp_path):
    engine = tiny_engine()

    async def body(client, app):
        ws_a, hello = await connect(client)
        assert (hello["engine"], hello["height"], hello["pixel_frames_per_chunk"]) == ("model", SIZE, 4)
        scene, _ = await start_scene(ws_a, hello, seed=3)
        assert [e["frame"] for e in scene["map"]["sink"]] == [0] and scene["map"]["local"] == []
        headings = [scene["map"]["camera"]["heading_deg"]]
        for chunk in range(4):
            header, frames = await play_chunk(ws_a, hello, ["e"])
            headings.append(header["map"]["camera"]["heading_deg"])
            assert frames.shape == (4, SIZE, SIZE, 3) and frames.dtype == np.uint8
        np.testing.assert_allclose(np.diff(headings), 3.0, atol=1e-3)      # E: 3 degrees right per latent frame
        # a second stream, opened once the step has compiled (this client answers the server's heartbeat
        # pings only while it reads a socket; a browser always does)
        ws_b, _ = await connect(client)
        await start_scene(ws_b, hello, seed=3)
        assert [e["frame"] for e in header["map"]["local"]] == [3, 4]      # the cache: sink + the 2 newest
        assert [e["frame"] for e in header["map"]["sink"]] == [0]
        header_b, _ = await play_chunk(ws_b, hello, ["w"])                 # the other stream is its own
        assert header_b["chunk"] == 0 and header_b["map"]["camera"]["heading_deg"] == pytest.approx(headings[0])
        sessions = list(app[SESSIONS].values())
        await ws_a.close()
        await ws_b.close()
        for _ in range(200):
            if not app[SESSIONS] and all(session.state is None for session in sessions):
                break
            await asyncio.sleep(0.05)
        assert not app[SESSIONS] and all(session.state is None for session in sessions)
    run_with_client(engine, tmp_path, body)


def test_an_uploaded_image_is_the_streams_first_frame():
    engine = tiny_engine()
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[:, : SIZE // 2] = 255
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    state = engine.start(upload_start(buffer.getvalue(), SIZE, SIZE))
    assert int(state.stream.frame) == 1 and engine.memory(state).sink[0].tolist() == [0]
    state, frames = engine.step(state, np.zeros((1, 8), bool))
    assert frames.shape == (4, SIZE, SIZE, 3)
    assert jax.tree.structure(state.stream) == jax.tree.structure(engine.start(upload_start(buffer.getvalue(), SIZE, SIZE)).stream)


def test_with_maco_the_map_shows_the_sink_the_window_and_selected_memory_at_their_cameras():
    cfg = dit_configs.get_config("tiny,control,camera")
    cfg.num_layers = 2
    dit_config = DiTConfig.from_config(cfg)
    policy = MacoPolicy(MacoConfig(local=2, budget=2, select=1, tau_mdl=1.0), dit_config.frames_per_chunk)
    spec = streaming.StreamSpec.create(dit_config, get_vae_config("tiny"), streaming.StreamConfig(), SIZE, SIZE,
                                       policy=policy)
    engine = ModelEngine({"dit": init_dit_params(spec, seed=0), "vae": tiny_engine().params["vae"]}, spec)
    state = engine.start(upload_start(_png(np.full((SIZE, SIZE, 3), 90, np.uint8)), SIZE, SIZE))
    centres = {0: engine.pose(state)[:3, 3]}
    for chunk in range(6):                   # walk forward: every chunk at its own place
        state, _ = engine.step(state, np.asarray([[True] + [False] * 7]))
        centres[chunk + 1] = engine.pose(state)[:3, 3]
    view = engine.memory(state)
    assert view.sink[0].tolist() == [0] and view.local[0].tolist() == [5, 6]
    assert view.selected[0].tolist() and set(view.selected[0].tolist()) <= {1, 2, 3, 4}   # tau 1: all admitted
    for frames, positions in (view.sink, view.local, view.selected):
        np.testing.assert_allclose(positions, [centres[f] for f in frames], atol=1e-5)


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_committed_student_streams_as_it_was_trained():
    """asset:student_tiny has no `stream` or `maco` section: its stream has the noise levels its training
    rollout visits (training/stages/student.py) and its cache, and MACO's context (sink + selected memory +
    local window) is the cache it was trained with."""
    from worldscape_jax.inference.loading import load_exported
    from worldscape_jax.play.model_engine import load_model_engine
    from worldscape_jax.training.stages import student

    _, config = load_exported("asset:student_tiny")
    engine = load_model_engine("asset:student_tiny")
    spec = engine.spec
    np.testing.assert_allclose(spec.stream.sigmas(), np.asarray(student.denoising_sigmas(config)), rtol=1e-6)
    assert spec.dit.camera_turn_warp and spec.stream.cache_frames == config.student.cache_slots
    maco = spec.policy.config
    assert 1 + maco.select + maco.local == config.student.cache_slots and maco.select == 2
    rolling = load_model_engine("asset:student_tiny", memory="rolling").spec
    assert rolling.policy.slots == config.student.cache_slots
