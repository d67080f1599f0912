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
  * The turn warp (the teacher's first frame re-projected through each frame's turn) is streamed
    relative to the stream, never to its first frame: tied to the first frame it is black once the
    camera has turned away (measured: relative to the first frame 90% of chunks leave the training
    clips' ray range within 400 frames and all of them later, and the first-frame turn warp is all
    black in the median frame of a 10,000-frame stream). The committed student (asset:student_tiny,
    trained from the turn-warp teacher, in_dim 64) is conditioned as its training rollout was: each
    chunk as latents 1.. of a teacher clip that starts at the newest pixel frame the stream has, its
    warp re-projecting that frame. It costs VAE encodes of the 5-frame clip per chunk inside the step
    and feeds the student's own output back as a condition. A student without the warp (in_dim 16
    or 48) needs neither.
"""

from worldscape_jax.streaming.config import StreamConfig
from worldscape_jax.streaming.policy import CacheLayout, CachePolicy
from worldscape_jax.streaming.rolling import RollingPolicy
from worldscape_jax.streaming.stream import StreamSpec, StreamState, cache_roles, init_stream, step

__all__ = ["CacheLayout", "CachePolicy", "RollingPolicy", "StreamConfig", "StreamSpec", "StreamState", "cache_roles",
           "init_stream", "step"]
