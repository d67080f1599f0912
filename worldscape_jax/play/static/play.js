// WorldScape play page: keys held at each chunk boundary go to the server over a websocket; the
// chunk's frames come back as raw RGB and are drawn on the stream canvas, paced over the time a chunk
// takes, while the next chunk is already being computed. window.play exposes the live state (for
// the browser test and the benchmark): frames drawn, latencies, fps, camera pose, map, errors.
"use strict";

const play = window.play = {
  hello: null, scene: null, held: new Set(), pressedAt: new Map(), inflight: false, nextId: 1,
  requests: new Map(), roundTrips: [], pendingHeader: null, queue: [], nextDrawAt: 0, chunkMs: 250,
  framesDrawn: 0, chunksReceived: 0, drawTimes: [], latencies: [], fps: 0, map: null,
  camera: null, errors: [], unknownKeys: 0, recording: false, recordings: [], sendAllKeys: true,
  recentFrames: [],  // the last RECENT_FRAMES frames received, with the keys they were made with
};
const RECENT_FRAMES = 64;
const $ = (id) => document.getElementById(id);
const stream = $("stream"), streamCtx = stream.getContext("2d");
const mapCanvas = $("map"), mapCtx = mapCanvas.getContext("2d");
const COLOURS = { path: "rgb(150,150,150)", sink: "rgb(40,90,220)", local: "rgb(40,170,60)",
                  selected: "rgb(235,140,20)", camera: "rgb(220,40,40)" };

function status(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
  if (isError) play.errors.push(text);
}

const ws = new WebSocket(`ws://${location.host}/ws`);
ws.binaryType = "arraybuffer";
play.ws = ws;
ws.onopen = () => status("connected");
ws.onclose = () => status("disconnected from the server; reload the page", true);
ws.onmessage = (event) => {
  if (typeof event.data !== "string") return onFrames(new Uint8Array(event.data));
  const message = JSON.parse(event.data);
  if (message.type === "hello") {
    play.hello = message;
    $("engine").textContent = `${message.engine} engine, ${message.width}x${message.height}`;
    stream.width = message.width; stream.height = message.height;
    startScene({ seed: Number($("seed").value) });
  } else if (message.type === "scene" || message.type === "frames") {
    play.pendingHeader = message;
  } else if (message.type === "error") {
    status(`error: ${message.message}`, true);
    if (message.request === "keys") play.inflight = false;
  } else if (message.type === "recording") {
    play.recording = true; $("record").classList.add("on"); status(`recording ${message.video}`);
  } else if (message.type === "recorded") {
    play.recording = false; $("record").classList.remove("on");
    play.recordings.push(message);
    $("recordings").innerHTML += ` <a href="${message.video}">mp4</a> <a href="${message.keys}">keys</a>`;
    status(`recorded ${message.frames} frames`);
  }
};

function send(message) { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message)); }

function startScene(start) {
  play.queue = [];
  status(start.seed !== undefined ? `starting scene ${start.seed}...` : "starting from the image...");
  send({ type: "start", ...start });
}

function onFrames(bytes) {
  const header = play.pendingHeader;
  play.pendingHeader = null;
  if (!header) return;
  const { width, height } = play.hello, size = width * height * 3;
  const frames = [];
  for (let i = 0; i * size < bytes.length; i++) frames.push(bytes.subarray(i * size, (i + 1) * size));
  drawMap(header.map);
  if (header.type === "scene") {
    play.scene = header; play.queue = [];
    drawFrame(frames[0]);
    $("seed").value = header.seed ?? $("seed").value;
    status(`scene ${header.source === "upload" ? "from the image" : header.seed} started`);
  } else {
    const request = play.requests.get(header.id);
    play.requests.delete(header.id);
    if (request) {
      play.roundTrips.push(performance.now() - request.sentAt);
      if (play.roundTrips.length > 5) play.roundTrips.shift();
      play.chunkMs = [...play.roundTrips].sort((a, b) => a - b)[play.roundTrips.length >> 1];  // median of 5
    }
    play.chunksReceived += 1;
    play.unknownKeys = header.unknown_keys;
    $("step").textContent = header.step_ms.toFixed(0);
    $("chunk").textContent = header.chunk;
    $("unknown").textContent = header.unknown_keys;
    frames.forEach((frame, i) => play.queue.push({ frame, request: i === 0 ? request : null }));
    const keys = request ? request.keys : [];
    frames.forEach((rgb) => play.recentFrames.push({ keys, rgb }));
    if (play.recentFrames.length > RECENT_FRAMES) play.recentFrames.splice(0, play.recentFrames.length - RECENT_FRAMES);
  }
  play.inflight = false;
  requestChunk();
}

function requestChunk() {
  // at most one chunk waits to be drawn: a faster server would only grow the queue, and with it the latency
  const waiting = play.queue.length > (play.hello ? play.hello.pixel_frames_per_chunk : 1);
  if (play.inflight || waiting || !play.scene || ws.readyState !== WebSocket.OPEN) return;
  const id = play.nextId++;
  const keys = [...play.held];
  play.requests.set(id, { sentAt: performance.now(), keys });
  play.inflight = true;
  send({ type: "keys", keys, id });
}

function drawFrame(rgb) {
  const { width, height } = play.hello;
  const image = streamCtx.createImageData(width, height);
  for (let p = 0, q = 0; p < rgb.length; p += 3, q += 4) {
    image.data[q] = rgb[p]; image.data[q + 1] = rgb[p + 1]; image.data[q + 2] = rgb[p + 2]; image.data[q + 3] = 255;
  }
  streamCtx.putImageData(image, 0, 0);
}

function drawTick() {
  const now = performance.now();
  if (play.queue.length && now >= play.nextDrawAt) {
    const { frame, request } = play.queue.shift();
    drawFrame(frame);
    play.framesDrawn += 1;
    play.drawTimes.push(now);
    while (play.drawTimes.length && play.drawTimes[0] < now - 1000) play.drawTimes.shift();
    play.fps = play.drawTimes.length;
    if (request) recordLatencies(request, now);
    // pace the chunk's frames over the time a chunk takes, a little faster so the queue never grows
    const perChunk = play.hello.pixel_frames_per_chunk;
    const perFrame = 0.9 * play.chunkMs / perChunk * (play.queue.length > perChunk ? 0.5 : 1);
    play.nextDrawAt = now + Math.min(250, Math.max(1000 / 60, perFrame));
    $("fps").textContent = play.fps;
    requestChunk();
  }
  setTimeout(drawTick, 4);
}
setTimeout(drawTick, 4);

function recordLatencies(request, now) {
  for (const key of request.keys) {
    const pressed = play.pressedAt.get(key);
    if (pressed !== undefined && pressed <= request.sentAt) {
      play.latencies.push(now - pressed);
      play.pressedAt.delete(key);
    }
  }
  if (play.latencies.length > 200) play.latencies.splice(0, play.latencies.length - 200);
  const recent = play.latencies.slice(-20);
  if (recent.length) $("latency").textContent = (recent.reduce((a, b) => a + b, 0) / recent.length).toFixed(0);
}

function drawMap(map) {
  if (!map) return;
  play.map = map; play.camera = map.camera;
  const size = mapCanvas.width, margin = 20;
  const marks = ["sink", "local", "selected"].flatMap((g) => map[g].map((e) => [e.x, e.z]));
  const points = map.path.concat(marks, [[map.camera.x, map.camera.z]]);
  const xs = points.map((p) => p[0]), zs = points.map((p) => p[1]);
  const cx = (Math.min(...xs) + Math.max(...xs)) / 2, cz = (Math.min(...zs) + Math.max(...zs)) / 2;
  const span = Math.max(Math.max(...xs) - Math.min(...xs), Math.max(...zs) - Math.min(...zs), 1.0);
  const px = (x, z) => [size / 2 + (x - cx) / span * (size - 2 * margin), size / 2 - (z - cz) / span * (size - 2 * margin)];
  mapCtx.fillStyle = "#fff"; mapCtx.fillRect(0, 0, size, size);
  mapCtx.strokeStyle = COLOURS.path; mapCtx.lineWidth = 2; mapCtx.beginPath();
  map.path.forEach(([x, z], i) => { const [u, v] = px(x, z); i ? mapCtx.lineTo(u, v) : mapCtx.moveTo(u, v); });
  mapCtx.stroke();
  for (const [group, radius] of [["selected", 5], ["local", 4], ["sink", 4]]) {
    mapCtx.strokeStyle = COLOURS[group];
    for (const entry of map[group]) {
      const [u, v] = px(entry.x, entry.z);
      mapCtx.beginPath(); mapCtx.arc(u, v, radius, 0, 2 * Math.PI); mapCtx.stroke();
    }
  }
  const [u, v] = px(map.camera.x, map.camera.z), a = map.camera.heading_deg * Math.PI / 180;
  mapCtx.fillStyle = COLOURS.camera; mapCtx.beginPath();
  mapCtx.moveTo(u + 10 * Math.sin(a), v - 10 * Math.cos(a));
  mapCtx.lineTo(u + 5 * Math.sin(a - 2.4), v - 5 * Math.cos(a - 2.4));
  mapCtx.lineTo(u + 5 * Math.sin(a + 2.4), v - 5 * Math.cos(a + 2.4));
  mapCtx.fill();
  mapCtx.fillStyle = "#222";
  mapCtx.fillText(`heading ${map.camera.heading_deg.toFixed(0)}°`, 4, size - 6);
}

function keyName(event) { return event.key.length === 1 ? event.key.toLowerCase() : event.key; }
const ACTION = new Set("wasdqerf");
window.addEventListener("keydown", (event) => {
  if (event.target.tagName === "INPUT") return;
  const key = keyName(event);
  if (ACTION.has(key)) event.preventDefault();
  if (!ACTION.has(key) && !play.sendAllKeys) return;
  if (!play.held.has(key)) { play.held.add(key); play.pressedAt.set(key, performance.now()); }
});
window.addEventListener("keyup", (event) => { const key = keyName(event); play.held.delete(key); play.pressedAt.delete(key); });
window.addEventListener("blur", () => { play.held.clear(); play.pressedAt.clear(); });

$("go").onclick = () => startScene({ seed: Number($("seed").value) });
$("new-scene").onclick = () => { $("seed").value = Math.floor(Math.random() * 1e6); $("go").onclick(); };
$("reset").onclick = () => { play.queue = []; send({ type: "reset" }); };
$("record").onclick = () => send({ type: "record", on: !play.recording });
$("upload").onchange = () => {
  const file = $("upload").files[0];
  if (!file) return;
  if (file.size > 12 * 1024 * 1024) return status(`error: ${file.name} is larger than 12 MB`, true);
  const reader = new FileReader();
  reader.onload = () => startScene({ image: reader.result });
  reader.readAsDataURL(file);
  $("upload").value = "";
};
