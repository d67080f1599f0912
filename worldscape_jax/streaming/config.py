"""What the stream needs beyond the model: the student's timesteps, the cache's size, the sink.

`StreamConfig` is a hashable dataclass (a static part of the jitted step). A student stage config
carries it as its `stream` section (`get_config(scale)` below gives the ml_collections form), and
`StreamConfig.from_config(config.stream)` reads it back, refusing unknown fields.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections
import numpy as np

from worldscape_jax.diffusion.flow import NUM_TRAIN_TIMESTEPS, shift_sigma

SELF_FORCING_STEPS = (1000.0, 750.0, 500.0, 250.0)  # research notes §1.3, before the shift
REFERENCES = ("newest_frame", "none", "first_frame")  # what generated chunks are conditioned on (see StreamConfig)


@dataclasses.dataclass(frozen=True)
class StreamConfig:
    """The floor's settings.

    denoising_steps, shift: the student's K timesteps (Wan t in (0, 1000]) before the timestep shift;
      Self-Forcing's [1000, 750, 500, 250] with shift 5 visits t = [1000, 937.5, 833.3, 625].
    context_timestep: the timestep of the cache refresh pass on the clean chunk (Self-Forcing: 0).
    cache_frames: KV cache capacity in latent frames, the sink included (the current chunk is not in it).
    sink_frames: leading frames kept forever (the first latent frame, the given image, at least).
    reference: what chunks after the first are conditioned on (training/stages/student.py
      `reference_mode`): "newest_frame" (the teacher clip from the newest decoded frame), "none"
      (zero conditioning channels; the past comes through the cache only) or "first_frame" (the teacher
      clip from the stream's given first frame at its camera: its turn warp follows the turn since the start).
    reference_noise: std of the Gaussian noise on a newest-frame reference's control channels
      (`conditioning.noised_control`), the amount the student was trained with; 0 = none.
    reference_blur: block size of the low pass on a newest-frame reference before it is encoded
      (`conditioning.low_pass`), as the student was trained; 1 = none.
    reference_outside: with a first-frame reference, "black" (the warp's OUTSIDE pixels encoded as the teacher
      saw them) or "dropped" (warp channels scaled by their coverage, `conditioning.drop_outside_warp`).
    reference_reach, reference_reach_deg: a first-frame reference's conditioning is scaled by
      `conditioning.anchor_weight`, fading to zero at this much travel (scene units) and turn (degrees)
      from the first camera, as the student was trained; 0 = no fade.
    """

    denoising_steps: tuple[float, ...] = SELF_FORCING_STEPS
    shift: float = 5.0
    context_timestep: float = 0.0
    cache_frames: int = 4
    sink_frames: int = 1
    reference: str = "newest_frame"
    reference_noise: float = 0.0
    reference_blur: int = 1
    reference_outside: str = "black"
    reference_reach: float = 0.0
    reference_reach_deg: float = 0.0

    def __post_init__(self):
        steps = np.asarray(self.denoising_steps, np.float64)
        if steps.ndim != 1 or steps.size < 1 or np.any(steps <= 0) or np.any(steps > NUM_TRAIN_TIMESTEPS) \
                or np.any(np.diff(steps) >= 0):
            raise ValueError(f"stream config: denoising_steps must be decreasing timesteps in (0, 1000], got "
                             f"{self.denoising_steps}")
        if self.sink_frames < 1 or self.cache_frames <= self.sink_frames:
            raise ValueError(f"stream config: need 1 <= sink_frames < cache_frames (the first frame is the sink), "
                             f"got sink_frames={self.sink_frames}, cache_frames={self.cache_frames}")
        if self.reference not in REFERENCES:
            raise ValueError(f"stream config: reference must be one of {REFERENCES}, got {self.reference!r}")
        if not self.reference_noise >= 0.0:
            raise ValueError(f"stream config: reference_noise must be >= 0, got {self.reference_noise}")
        if self.reference_blur < 1:
            raise ValueError(f"stream config: reference_blur must be >= 1, got {self.reference_blur}")
        if self.reference_outside not in ("black", "dropped"):
            raise ValueError(f"stream config: reference_outside must be 'black' or 'dropped', got "
                             f"{self.reference_outside!r}")
        if not (self.reference_reach >= 0.0 and self.reference_reach_deg >= 0.0):
            raise ValueError(f"stream config: reference_reach and reference_reach_deg must be >= 0 (0 = no fade), got "
                             f"{self.reference_reach}, {self.reference_reach_deg}")

    def sigmas(self) -> np.ndarray:
        """The K noise levels the student visits, float32 [K] (shifted)."""
        steps = np.asarray(self.denoising_steps, np.float64) / NUM_TRAIN_TIMESTEPS
        return np.asarray(shift_sigma(steps, self.shift), np.float32)

    @classmethod
    def from_config(cls, cfg: Any) -> "StreamConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        values = dict(cfg)
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ValueError(f"stream config: unknown fields {unknown}; expected some of {sorted(fields)}")
        if "denoising_steps" in values:
            values["denoising_steps"] = tuple(float(t) for t in values["denoising_steps"])
        return cls(**values)


def from_student(config) -> StreamConfig:
    """The stream a causal student was trained for (configs/student.py: its `student` section): its
    denoising levels and shift, its rolling cache's size and sink. A config with a `stream` section
    (an override) is read from that instead."""
    if "stream" in config:
        return StreamConfig.from_config(config.stream)
    if "student" not in config:
        raise ValueError(f"stream config: a {config.get('stage')!r} config has no 'student' section; only a causal "
                         f"student (configs/student.py) streams")
    s = config.student
    return StreamConfig(denoising_steps=tuple(float(level) * NUM_TRAIN_TIMESTEPS for level in s.denoising_levels),
                        shift=float(s.shift), cache_frames=int(s.cache_slots), sink_frames=int(s.sink_frames),
                        reference=str(s.get("reference", "newest_frame")),
                        reference_noise=float(s.get("reference_noise", 0.0)),
                        reference_blur=int(s.get("reference_blur", 1)),
                        reference_outside=str(s.get("reference_outside", "black")),
                        reference_reach=float(s.get("reference_reach", 0.0)),
                        reference_reach_deg=float(s.get("reference_reach_deg", 0.0)))


def get_config(scale: str = "tiny") -> ml_collections.ConfigDict:
    """The `stream` section of a student config: `config.stream = streaming.config.get_config(scale)`."""
    if scale == "tiny":  # 1-frame chunks; the sink + 3 recent frames + the chunk: the tiny teacher's 5-frame span
        cfg = StreamConfig(cache_frames=4, sink_frames=1)
    elif scale == "wan1_3b":  # 3-frame chunks; sink + 17 frames + the chunk: Self-Forcing's 21-frame span
        cfg = StreamConfig(cache_frames=18, sink_frames=1)
    else:
        raise ValueError(f"streaming config: unknown scale {scale!r}; expected 'tiny' or 'wan1_3b'")
    return ml_collections.ConfigDict(dataclasses.asdict(cfg))
