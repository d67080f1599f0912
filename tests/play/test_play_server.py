"""The play server in-process: the websocket protocol, malformed messages, independent sessions, cleanup."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from play_client import connect, play_chunk, receive_json, run_with_client, start_scene
from worldscape_jax.play.engines import SynthWorldEngine
from worldscape_jax.play.scene_start import synthworld_start
from worldscape_jax.play.server import SESSIONS
from worldscape_jax.training.media import read_mp4


@pytest.fixture(scope="module")
def engine():
    return SynthWorldEngine()


def test_keys_in_frames_out_and_the_map_follows_the_camera(engine, tmp_path):
    async def body(client, app):
        ws, hello = await connect(client)
        assert (hello["height"], hello["width"], hello["keys"]) == (64, 64, "wasdqerf")
        scene, first = await start_scene(ws, hello, seed=3)
        np.testing.assert_array_equal(first[0], synthworld_start(3, 64, 64).first_frame)
        start_heading = scene["map"]["camera"]["heading_deg"]
        header, frames = await play_chunk(ws, hello, ["e", "Shift", "x"], request_id=5)
        assert header["id"] == 5 and header["count"] == 4 and frames.shape == (4, 64, 64, 3)
        assert header["unknown_keys"] == 2
        turned = header["map"]["camera"]["heading_deg"] - start_heading
        assert turned == pytest.approx(3.0, abs=1e-3)        # E: 3 degrees right per latent frame
        assert not np.array_equal(frames[-1], first[0])
        header, _ = await play_chunk(ws, hello, ["w"])
        assert len(header["map"]["path"]) == 3
        await ws.close()
    run_with_client(engine, tmp_path, body)


MALFORMED = [
    ("not json", "not JSON"),
    (json.dumps([1, 2]), "JSON object"),
    (json.dumps({"type": "fly"}), "unknown message type"),
    (json.dumps({"type": "keys", "keys": "w"}), "'keys' must be a list"),
    (json.dumps({"type": "keys", "keys": ["w"], "id": "x"}), "'id' must be an integer"),
    (json.dumps({"type": "start"}), "exactly one of 'seed'"),
    (json.dumps({"type": "start", "seed": -1}), "'seed' must be an integer"),
    (json.dumps({"type": "start", "image": "%%%"}), "not valid base64"),
    (json.dumps({"type": "start", "image": base64.b64encode(b"hello").decode()}), "not a readable image"),
    (json.dumps({"type": "record", "on": "yes"}), "'on' must be true or false"),
    (json.dumps({"type": "keys", "keys": ["w"]}), "start a scene first"),
    (json.dumps({"type": "reset"}), "no scene has started"),
]


def test_malformed_messages_get_errors_and_the_socket_keeps_working(engine, tmp_path):
    async def body(client, app):
        ws, hello = await connect(client)
        for text, expected in MALFORMED:
            await ws.send_str(text)
            reply = await receive_json(ws)
            assert reply["type"] == "error" and expected in reply["message"], (text, reply)
        await ws.send_bytes(b"\x00\x01")
        assert "binary messages" in (await receive_json(ws))["message"]
        png = io.BytesIO()
        Image.new("RGB", (40, 20), (200, 10, 10)).save(png, format="PNG")
        await ws.send_json({"type": "start", "image": "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()})
        assert "SynthWorld scenes only" in (await receive_json(ws))["message"]   # this engine has no scene for it
        await start_scene(ws, hello, seed=1)
        header, frames = await play_chunk(ws, hello, [])
        assert frames.shape == (4, 64, 64, 3)
        await ws.close()
    run_with_client(engine, tmp_path, body)


def test_two_connections_are_independent_streams_and_disconnect_frees_state(engine, tmp_path):
    async def body(client, app):
        (ws_a, hello), (ws_b, _) = await connect(client), await connect(client)
        assert len(app[SESSIONS]) == 2
        sessions = list(app[SESSIONS].values())
        scene_a, _ = await start_scene(ws_a, hello, seed=2)
        scene_b, _ = await start_scene(ws_b, hello, seed=2)
        for _ in range(2):
            header_a, frames_a = await play_chunk(ws_a, hello, ["e"])
            header_b, frames_b = await play_chunk(ws_b, hello, ["w"])
        camera_a, camera_b = header_a["map"]["camera"], header_b["map"]["camera"]
        assert camera_a["heading_deg"] - scene_a["map"]["camera"]["heading_deg"] == pytest.approx(6.0, abs=1e-3)
        assert camera_b["heading_deg"] == pytest.approx(scene_b["map"]["camera"]["heading_deg"], abs=1e-3)
        assert (camera_a["x"], camera_a["z"]) == pytest.approx((scene_a["map"]["camera"]["x"], scene_a["map"]["camera"]["z"]))
        assert np.hypot(camera_b["x"] - scene_b["map"]["camera"]["x"], camera_b["z"] - scene_b["map"]["camera"]["z"]) \
            == pytest.approx(0.16, abs=1e-4)             # W: 0.08 units per latent frame
        assert not np.array_equal(frames_a, frames_b)
        await ws_a.send_json({"type": "keys", "keys": ["w"]})   # disconnect with a chunk in flight
        await ws_a.close()
        for _ in range(200):
            if len(app[SESSIONS]) == 1 and sessions[0].state is None:
                break
            await asyncio.sleep(0.05)
        assert len(app[SESSIONS]) == 1 and sessions[0].state is None and sessions[1].state is not None
        await play_chunk(ws_b, hello, ["q"])             # the other stream goes on
        await ws_b.close()
    run_with_client(engine, tmp_path, body)


def test_record_writes_the_frames_and_the_key_log(engine, tmp_path):
    async def body(client, app):
        ws, hello = await connect(client)
        await start_scene(ws, hello, seed=4)
        await ws.send_json({"type": "record", "on": True})
        assert (await receive_json(ws))["type"] == "recording"
        for keys in (["w"], ["e", "w"], []):
            await play_chunk(ws, hello, keys)
        await ws.send_json({"type": "record", "on": False})
        recorded = await receive_json(ws)
        assert recorded["type"] == "recorded" and recorded["frames"] == 1 + 3 * 4 and recorded["chunks"] == 3
        response = await client.get(recorded["keys"])
        lines = [json.loads(line) for line in (await response.text()).splitlines()]
        assert lines[0]["scene"]["seed"] == 4 and [line["keys"] for line in lines[1:]] == ["w", "we", "."]
        video_path = os.path.join(tmp_path, os.path.basename(recorded["video"]))
        assert read_mp4(video_path).shape == (13, 64, 64, 3)
        page = await client.get("/")
        assert page.status == 200 and "<canvas id=\"stream\"" in await page.text()
        await ws.close()
    run_with_client(engine, tmp_path, body)
