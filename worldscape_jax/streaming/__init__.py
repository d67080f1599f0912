"""The streaming floor: a causal student generating chunk after chunk over a KV cache, in real time.

Above models/ and diffusion/ (lower floors never import it). `stream.init_stream` and `stream.step`
(one jitted pure function per chunk), the cache-policy protocol (`policy.py`) with the rolling window
(`rolling.py`); MACO and the play session build on these.

Camera input in a stream (issue 17 item 5; measured in BENCHMARKS.md, "Camera input in a stream"):
  * Each chunk's Plücker rays are relative to the camera of the newest frame the stream already has,
    the previous chunk's last pixel frame (`models.conditioning.chunk_camera_input`; training clips
    use `clip_camera_input`, the same rays). Relative to the stream's first frame, the rays' moment
    o x d grows with the distance travelled and their directions cover every heading, far outside
    what a 9- to 17-frame training clip shows; relative to the previous frame they are bounded by one
    chunk's motion at frame 10 and at frame 10,000 alike, and the keys already in the cache stay
    valid (each chunk's input depends only on itself and its predecessor).
  * The conditioning channels (control, first frame, turn warp) follow `StreamConfig.reference`
    (training/stages/student.py `reference_mode`, which the student was trained with):
    "newest_frame" conditions each chunk as latent 1 of a teacher clip that starts at the newest decoded
    frame (`conditioning.reference_conditions`), so its turn warp is that frame re-projected through the
    chunk's turn; it drifts, each chunk's error being re-encoded into the next. "none" gives zero
    channels (the past comes through the cache only). "first_frame" conditions each chunk as latent 1
    of the teacher clip from the stream's given first frame at its camera: its turn warp is the first
    frame turned by the rotation since the start, which nothing generated feeds back into, and which
    shows black where the camera looks away from the first view (as in the median frame of a
    10,000-frame stream, measured in BENCHMARKS.md). The two with channels cost a VAE encode per chunk.
"""

from worldscape_jax.streaming.config import StreamConfig
from worldscape_jax.streaming.policy import CacheLayout, CachePolicy
from worldscape_jax.streaming.rolling import RollingPolicy
from worldscape_jax.streaming.stream import StreamSpec, StreamState, cache_roles, init_stream, step

__all__ = ["CacheLayout", "CachePolicy", "RollingPolicy", "StreamConfig", "StreamSpec", "StreamState", "cache_roles",
           "init_stream", "step"]
