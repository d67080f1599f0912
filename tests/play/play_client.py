"""Helpers for the play tests: an in-process server and a websocket client that speaks its protocol."""

from __future__ import annotations

import asyncio
import json

import numpy as np
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from worldscape_jax.play.server import make_app

TIMEOUT_S = 120.0  # the first chunk of a process includes compilation


def run_with_client(engine, record_dir, body):
    """Runs `await body(client, app)` against a fresh in-process server on 127.0.0.1."""
    async def main():
        app = make_app(engine, str(record_dir))
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            return await body(client, app)
    return asyncio.run(main())


async def receive_json(ws) -> dict:
    message = await ws.receive(timeout=TIMEOUT_S)
    assert message.type == WSMsgType.TEXT, f"expected a JSON text message, got {message.type} {message.data!r}"
    return json.loads(message.data)


async def receive_frames(ws, header: dict, height: int, width: int) -> np.ndarray:
    message = await ws.receive(timeout=TIMEOUT_S)
    assert message.type == WSMsgType.BINARY, f"expected frames after {header['type']}, got {message.type}"
    count = header.get("count", 1)
    assert len(message.data) == count * height * width * 3
    return np.frombuffer(message.data, np.uint8).reshape(count, height, width, 3)


async def connect(client):
    """(ws, hello) of a new connection."""
    ws = await client.ws_connect("/ws")
    hello = await receive_json(ws)
    assert hello["type"] == "hello"
    return ws, hello


async def start_scene(ws, hello, seed: int):
    await ws.send_json({"type": "start", "seed": seed})
    scene = await receive_json(ws)
    assert scene["type"] == "scene", scene
    return scene, await receive_frames(ws, scene, hello["height"], hello["width"])


async def play_chunk(ws, hello, keys, request_id=0):
    await ws.send_json({"type": "keys", "keys": keys, "id": request_id})
    header = await receive_json(ws)
    assert header["type"] == "frames", header
    return header, await receive_frames(ws, header, hello["height"], hello["width"])
