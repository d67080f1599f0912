"""The play server: one page, one websocket per player, one stream state per websocket (aiohttp).

Each connection gets its own PlaySession (so two tabs are two independent streams) that lives exactly
as long as the socket: on disconnect, even in the middle of a chunk, its state is dropped and an open
recording finished. Engine calls run in a thread pool so the event loop keeps serving other players
while a chunk is computed; one connection's messages are handled in order. A malformed message, a bad
image or any failure inside a handler is answered with an error message on that socket; nothing a
page sends can stop the server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import importlib.resources
import itertools
import logging
import os
import threading

from aiohttp import WSMsgType, web

from worldscape_jax.play import protocol
from worldscape_jax.play.engines import Engine
from worldscape_jax.play.keys import ACTION_KEYS
from worldscape_jax.play.scene_start import SceneError, synthworld_start, upload_start
from worldscape_jax.play.session import PlaySession, SessionError

log = logging.getLogger(__name__)
STATIC = importlib.resources.files("worldscape_jax.play") / "static"
ENGINE = web.AppKey("engine", object)
SESSIONS = web.AppKey("sessions", dict)
RECORD_DIR = web.AppKey("record_dir", str)
EXECUTOR = web.AppKey("executor", concurrent.futures.ThreadPoolExecutor)
COUNTER = web.AppKey("counter", itertools.count)
MAX_SESSIONS = web.AppKey("max_sessions", int)


def make_app(engine: Engine, record_dir: str, max_sessions: int = 8, workers: int = 2) -> web.Application:
    """The aiohttp application: '/' (the page), '/static/*', '/ws' and '/recordings/*'."""
    app = web.Application()
    app[ENGINE], app[SESSIONS], app[RECORD_DIR] = engine, {}, os.path.abspath(record_dir)
    app[EXECUTOR] = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="play-step")
    app[COUNTER], app[MAX_SESSIONS] = itertools.count(1), max_sessions
    os.makedirs(app[RECORD_DIR], exist_ok=True)
    app.router.add_get("/", _page)
    app.router.add_get("/favicon.ico", _no_icon)
    app.router.add_static("/static/", str(STATIC))
    app.router.add_static("/recordings/", app[RECORD_DIR])
    app.router.add_get("/ws", _websocket)
    app.on_shutdown.append(_close_sessions)
    app.on_cleanup.append(_stop_executor)
    return app


async def _page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(str(STATIC / "index.html"))


async def _no_icon(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def _close_sessions(app: web.Application) -> None:
    for session in list(app[SESSIONS].values()):
        session.close()
    app[SESSIONS].clear()


async def _stop_executor(app: web.Application) -> None:
    app[EXECUTOR].shutdown(wait=False, cancel_futures=True)


async def _websocket(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    ws = web.WebSocketResponse(max_msg_size=protocol.MAX_MESSAGE_BYTES, heartbeat=30.0)
    await ws.prepare(request)
    if len(app[SESSIONS]) >= app[MAX_SESSIONS]:
        await ws.send_json(protocol.error_message(f"the server already runs {app[MAX_SESSIONS]} streams; "
                                                  "close another tab and reload"))
        await ws.close()
        return ws
    number = next(app[COUNTER])
    session = PlaySession(app[ENGINE])
    app[SESSIONS][number] = session
    try:
        engine = app[ENGINE]
        await ws.send_json({"type": "hello", "session": number, "engine": engine.name, "height": engine.height,
                            "width": engine.width, "frames_per_chunk": engine.frames_per_chunk,
                            "pixel_frames_per_chunk": engine.pixel_frames_per_chunk, "keys": ACTION_KEYS})
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await _handle(app, ws, session, number, message.data)
            elif message.type == WSMsgType.BINARY:
                await ws.send_json(protocol.error_message("binary messages are not accepted; send JSON text "
                                                          "(an image goes base64 in a 'start' message)"))
            elif message.type == WSMsgType.ERROR:
                log.warning("session %d: websocket error %s", number, ws.exception())
    except ConnectionResetError:
        log.info("session %d: client went away mid-message", number)
    finally:
        app[SESSIONS].pop(number, None)
        # shielded: a handler cancelled by the disconnect still waits for its chunk in flight, then frees
        await asyncio.shield(asyncio.get_running_loop().run_in_executor(app[EXECUTOR], session.close))
    return ws


async def _handle(app: web.Application, ws: web.WebSocketResponse, session: PlaySession, number: int,
                  text: str) -> None:
    request = None
    try:
        message = protocol.parse_message(text)
        request = type(message).__name__.lower()
        await _dispatch(app, ws, session, number, message)
    except (protocol.ProtocolError, SceneError, SessionError) as error:
        await ws.send_json(protocol.error_message(str(error), request))
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception as error:  # noqa: BLE001 - a failing request must not end the server or the socket
        log.exception("session %d: %s failed", number, request)
        await ws.send_json(protocol.error_message(f"internal error in {request}: {type(error).__name__}: {error}",
                                                  request))


async def _dispatch(app, ws, session: PlaySession, number: int, message: protocol.Message) -> None:
    loop = asyncio.get_running_loop()
    run = lambda fn, *args: loop.run_in_executor(app[EXECUTOR], fn, *args)  # noqa: E731
    engine = session.engine
    if isinstance(message, protocol.Keys):
        chunk = await run(session.step, message.keys)
        await ws.send_json({"type": "frames", "id": message.id, "chunk": chunk.index, "count": len(chunk.frames),
                            "height": engine.height, "width": engine.width,
                            "step_ms": round(chunk.step_seconds * 1000, 2), "unknown_keys": chunk.unknown_keys,
                            "map": chunk.map})
        await ws.send_bytes(protocol.frames_bytes(chunk.frames))
    elif isinstance(message, (protocol.Start, protocol.Reset)):
        if isinstance(message, protocol.Reset):
            info = await run(session.reset)
        else:
            make = (synthworld_start, message.seed) if message.seed is not None else (upload_start, message.image)
            info = await run(session.start, await run(make[0], make[1], engine.height, engine.width))
        await ws.send_json({"type": "scene", **info, "map": session.map()})
        await ws.send_bytes(protocol.frames_bytes(session.scene.first_frame[None]))
    elif message.on:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
        recording = await run(session.start_recording, app[RECORD_DIR], f"play-{stamp}-s{number}")
        await ws.send_json({"type": "recording", "video": os.path.basename(recording.video_path)})
    else:
        written = await run(session.stop_recording)
        await ws.send_json({"type": "recorded", "frames": written["frames"], "chunks": written["chunks"],
                            "video": "/recordings/" + os.path.basename(written["video"]),
                            "keys": "/recordings/" + os.path.basename(written["keys"])})


def serve(engine: Engine, port: int, record_dir: str) -> None:
    """Runs the server on 127.0.0.1:port until interrupted (never on a public interface)."""
    web.run_app(make_app(engine, record_dir), host="127.0.0.1", port=port,
                print=lambda text: print(f"play: open http://127.0.0.1:{port}/ in a browser ({engine.name} engine)"))


class BackgroundServer:
    """The play server on 127.0.0.1 in a thread of its own (for the browser test, the benchmark, notebooks).

    `url` is the page's address; `close()` stops the server and frees every session.
    """

    def __init__(self, engine: Engine, record_dir: str, port: int = 0):
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(make_app(engine, record_dir))
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(port, started), daemon=True, name="play-server")
        self._thread.start()
        if not started.wait(60):
            raise RuntimeError("play server: did not start within 60 s")
        if self._error is not None:
            raise RuntimeError(f"play server: could not start on 127.0.0.1:{port}") from self._error

    def _run(self, port: int, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._error = None
        try:
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", port)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]
            self.url = f"http://127.0.0.1:{self.port}/"
        except Exception as error:  # noqa: BLE001 - reported to the caller's thread
            self._error = error
            started.set()
            return
        started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    @property
    def sessions(self) -> dict:
        return self._runner.app[SESSIONS]

    def close(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
