"""Play: a WorldScape stream you steer with the keyboard, in the browser or from a key script.

Layers, lowest first: `keys` (held keys -> the stream step's action array), `scene_start` (a
scene's first frame from SynthWorld or an uploaded image), `engines` (what one chunk step is: the
causal student's stream step, or the SynthWorld renderer as ground truth), `camera_map` (the live
top-down map), `recorder` (mp4 + key log written as frames arrive), `session` (one player's stream),
`protocol` and `server` (the websocket page), `headless` (a key script without a browser).
"""
