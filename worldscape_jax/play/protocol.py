"""The play page's websocket protocol: JSON text messages from the page, JSON + raw RGB back.

Page -> server (JSON text):
  {"type": "start", "seed": 7}                     a SynthWorld scene
  {"type": "start", "image": "<base64 or data: URL>"}   an uploaded image as the first frame
  {"type": "keys", "keys": ["w", "e"], "id": 12}   one chunk with these keys held; `id` is echoed
  {"type": "reset"}                                the current scene from its first frame again
  {"type": "record", "on": true}                   start (true) or stop (false) recording
Server -> page:
  {"type": "hello", ...}                           on connect: engine, sizes, action keys
  {"type": "scene", ...}  then one binary message  a scene started: its info, map, first frame
  {"type": "frames", "id", "count", ...} then one binary message   a chunk: timing, counters, map
  {"type": "recording", ...} / {"type": "recorded", ...}            record started / files written
  {"type": "error", "message", "request"}          anything wrong with a message; the socket stays open
A binary message is `count` frames of raw RGB, uint8 [count, H, W, 3] in C order.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json

import numpy as np

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_KEYS_PER_MESSAGE = 64


class ProtocolError(ValueError):
    """A message the server cannot act on; the text is sent back to the page."""


@dataclasses.dataclass(frozen=True)
class Start:
    seed: int | None = None
    image: bytes | None = None


@dataclasses.dataclass(frozen=True)
class Keys:
    keys: list[str]
    id: int | None = None


@dataclasses.dataclass(frozen=True)
class Reset:
    pass


@dataclasses.dataclass(frozen=True)
class Record:
    on: bool


Message = Start | Keys | Reset | Record


def parse_message(text: str) -> Message:
    """One page message; ProtocolError naming the field and what was expected otherwise."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError) as error:
        raise ProtocolError(f"message is not JSON ({error}); expected an object with a 'type'") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolError("message must be a JSON object with a string field 'type' "
                            "(one of start, keys, reset, record)")
    parser = _PARSERS.get(data["type"])
    if parser is None:
        raise ProtocolError(f"unknown message type {data['type']!r}; expected one of {sorted(_PARSERS)}")
    return parser(data)


def _start(data: dict) -> Start:
    seed, image = data.get("seed"), data.get("image")
    if (seed is None) == (image is None):
        raise ProtocolError("start: give exactly one of 'seed' (an integer) or 'image' (base64 or a data: URL)")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
            raise ProtocolError(f"start: 'seed' must be an integer in [0, 2^31), got {seed!r}")
        return Start(seed=seed)
    if not isinstance(image, str):
        raise ProtocolError("start: 'image' must be a string (base64 or a data: URL)")
    payload = image.split(",", 1)[1] if image.startswith("data:") and "," in image else image
    try:
        return Start(image=base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError):
        raise ProtocolError("start: 'image' is not valid base64") from None


def _keys(data: dict) -> Keys:
    keys, request_id = data.get("keys"), data.get("id")
    if not isinstance(keys, list) or len(keys) > MAX_KEYS_PER_MESSAGE:
        got = f"a list of {len(keys)}" if isinstance(keys, list) else type(keys).__name__
        raise ProtocolError(f"keys: 'keys' must be a list of at most {MAX_KEYS_PER_MESSAGE} key names, got {got}")
    if request_id is not None and (isinstance(request_id, bool) or not isinstance(request_id, int)):
        raise ProtocolError(f"keys: 'id' must be an integer when given, got {request_id!r}")
    return Keys(keys=keys, id=request_id)


def _record(data: dict) -> Record:
    if not isinstance(data.get("on"), bool):
        raise ProtocolError(f"record: 'on' must be true or false, got {data.get('on')!r}")
    return Record(on=data["on"])


_PARSERS = {"start": _start, "keys": _keys, "reset": lambda data: Reset(), "record": _record}


def frames_bytes(frames: np.ndarray) -> bytes:
    """The binary message of uint8 frames [n, H, W, 3]."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames_bytes: expected uint8 [n, H, W, 3], got {frames.dtype} {frames.shape}")
    return np.ascontiguousarray(frames).tobytes()


def error_message(message: str, request: str | None = None) -> dict:
    return {"type": "error", "message": message, "request": request}
