"""The causal student's stream step (worldscape_jax/streaming) as a play engine.

One jitted `streaming.step` per chunk, compiled once per engine and shared by every session (each
session has its own StreamState; the state is donated to the step, so a chunk allocates no second one). The map's memory entries are read from the attention context
the cache policy gives for the current camera (memory_view.py): the sink, the local window and the
selected memory of the next chunk.

`load_model_engine("asset:student_tiny")` loads a student export (launch/export.py): its DiT params,
its config (model, vae, stream sections) and the VAE it names. `load_model_engine("random")` runs
the student's architecture at random init with the tiny VAE (for tests and benchmarks, which test
the machinery, not the picture). The cache is MACO by default (sink, memory pool, local window, with
the map's "selected" entries); memory='rolling' gives the sink and the most recent frames.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from worldscape_jax import streaming
from worldscape_jax.inference.loading import ExportError, load_exported, load_vae, resolve_asset
from worldscape_jax.inference.pixels import to_uint8, to_unit_range
from worldscape_jax.models.dit import DiTConfig, build_dit
from worldscape_jax.play.engines import MemoryView, check_actions
from worldscape_jax.play.memory_view import FramePoses, memory_view, slots_memory_view
from worldscape_jax.play.scene_start import SceneStart
from worldscape_jax.streaming.config import from_student, get_config as stream_config_of
from worldscape_jax.streaming.maco import MacoConfig, MacoPolicy

STUDENT_DIT = "tiny,control,camera"     # the tiny student's DiT without an export (random init)


@dataclasses.dataclass(frozen=True)
class ModelState:
    stream: streaming.StreamState
    poses: FramePoses       # host-side: the camera of each latent frame the cache may still hold


class ModelEngine:
    name = "model"

    def __init__(self, params: dict, spec: streaming.StreamSpec, seed: int = 0, label: str = "model"):
        self.params, self.spec, self.seed, self.label = params, spec, seed, label
        self.height, self.width = spec.height, spec.width
        self.frames_per_chunk = spec.dit.frames_per_chunk
        self.pixel_frames_per_chunk = spec.pixel_frames_per_chunk
        self.sink_frames = spec.stream.sink_frames

        self._step = jax.jit(streaming.step, donate_argnums=1)
        self._context = jax.jit(lambda state: state.spec.policy.context(state.policy_state, state.c2w))
        self._slots = (jax.jit(lambda state: state.spec.policy.context_slots(state.policy_state, state.c2w))
                       if isinstance(spec.policy, MacoPolicy) else None)

    def start(self, scene: SceneStart) -> ModelState:
        first = to_unit_range(scene.first_frame)[None, None]
        state = streaming.init_stream(self.params, self.spec, first, jnp.asarray(scene.intrinsics)[None],
                                      jax.random.key(self.seed), start_c2w=jnp.asarray(scene.c2w)[None])
        poses = FramePoses()
        poses.add(0, np.asarray(scene.c2w)[None])
        return ModelState(state, poses)

    def step(self, state: ModelState, actions: np.ndarray) -> tuple[ModelState, np.ndarray]:
        held = jnp.asarray(check_actions(actions, self.frames_per_chunk))[None]
        first_frame = int(state.stream.frame)
        stream, frames = self._step(self.params, state.stream, held)
        if self._slots is None:         # MACO keeps each chunk's camera itself
            per_latent = self.pixel_frames_per_chunk // self.frames_per_chunk
            state.poses.add(first_frame, np.asarray(stream.chunk_c2w[0, per_latent - 1 :: per_latent]))
            context = self._context(stream)
            state.poses.keep_only(np.asarray(context.frame_index[0])[np.asarray(context.valid[0])].tolist())
        return ModelState(stream, state.poses), to_uint8(frames[0])

    def pose(self, state: ModelState) -> np.ndarray:
        return np.asarray(state.stream.c2w[0])

    def memory(self, state: ModelState) -> MemoryView:
        if self._slots is not None:
            slots, valid, is_memory = (np.asarray(a[0]) for a in self._slots(state.stream))
            cache = state.stream.policy_state
            return slots_memory_view(slots, valid, is_memory, np.asarray(cache.frame[0]), np.asarray(cache.length[0]),
                                     np.asarray(cache.position[0]))
        context = self._context(state.stream)
        return memory_view(np.asarray(context.frame_index[0]), np.asarray(context.valid[0]), self.sink_frames,
                           state.poses)


def cache_policy(memory: str, stream_config: streaming.StreamConfig, frames_per_chunk: int,
                 maco_section=None):
    """'maco' (MacoPolicy, the student config's maco section or MacoConfig's defaults) or 'rolling' (None:
    the stream's RollingPolicy of stream_config.cache_frames)."""
    if memory == "maco":
        config = MacoConfig.from_config(maco_section) if maco_section is not None else MacoConfig()
        return MacoPolicy(config, frames_per_chunk)
    if memory == "rolling":
        return None
    raise ValueError(f"memory {memory!r} is unknown; expected 'maco' or 'rolling'")


def random_engine(seed: int = 0, stream_config: streaming.StreamConfig | None = None,
                  vae_checkpoint: str = "asset:vae_tiny", memory: str = "maco") -> ModelEngine:
    """The tiny student's architecture at random init, with the committed tiny VAE."""
    from worldscape_jax.configs import dit as dit_configs
    vae_params, vae_config = load_vae(vae_checkpoint, "tiny")
    dit_config = DiTConfig.from_config(dit_configs.get_config(STUDENT_DIT))
    stream_config = stream_config or streaming.StreamConfig.from_config(stream_config_of("tiny"))
    policy = cache_policy(memory, stream_config, dit_config.frames_per_chunk)
    spec = streaming.StreamSpec.create(dit_config, vae_config, stream_config, height=64, width=64, policy=policy)
    return ModelEngine({"dit": init_dit_params(spec, seed), "vae": vae_params}, spec, seed, "random init")


def init_dit_params(spec: streaming.StreamSpec, seed: int) -> dict:
    """Random-init params of the stream's DiT (spec.dit), shaped for one chunk."""
    dit_config = spec.dit
    h, w = spec.latent_hw
    f = dit_config.frames_per_chunk
    x = jnp.zeros((1, f, h, w, dit_config.out_dim))
    cond = jnp.zeros((1, f, h, w, dit_config.in_dim - dit_config.out_dim)) if spec.uses_control else None
    camera = (jnp.zeros((1, f, spec.height, spec.width, 6 * spec.vae.temporal_factor))
              if dit_config.camera else None)
    text = jnp.zeros((1, dit_config.text_len, dit_config.text_dim))
    return build_dit(dit_config).init(jax.random.key(seed), x, jnp.zeros((1, f)), text, cond=cond,
                                      camera=camera)["params"]


def load_model_engine(model: str, seed: int = 0, memory: str = "maco") -> ModelEngine:
    """An engine from a student export (path or asset:NAME), or 'random' (see the module docstring).

    memory: 'maco' (the paper's cache, configured by the export's maco section when it has one, else
    `trained_span_maco`) or 'rolling' (the sink and the most recent frames).
    """
    if model == "random":
        return random_engine(seed, memory=memory)
    params, config = load_exported(model)
    if "stream" not in config and "student" not in config:
        raise ExportError(resolve_asset(model), f"is a {config.get('stage')!r} model, not a causal student; play "
                          "streams a student export (configs/student.py), or use --model=random "
                          "(the student's architecture at random init) or --engine=synthworld")
    vae_params, vae_config = load_vae(config.vae.checkpoint, config.vae.preset)
    dit_config, stream_config = DiTConfig.from_config(config.model), from_student(config)
    policy = cache_policy(memory, stream_config, dit_config.frames_per_chunk, student_maco_section(config))
    spec = streaming.StreamSpec.create(dit_config, vae_config, stream_config, height=config.data.height,
                                       width=config.data.width, policy=policy)
    return ModelEngine({"dit": params, "vae": vae_params}, spec, seed, model)


def student_maco_section(config) -> dict:
    """The MACO a student export streams with: its config's maco section, else `trained_span_maco`."""
    if config.get("maco"):
        return dict(config.maco)
    return trained_span_maco(from_student(config), config.model.frames_per_chunk)


def trained_span_maco(stream_config: streaming.StreamConfig, frames_per_chunk: int, select: int = 2,
                      budget: int = 4) -> dict:
    """A MACO (sizes in chunks) of the trained attention span, for an export without a maco section: sink +
    `select` memory + local window = the cache the student was trained with, so with MACO's "fixed"
    placement every key sits at an offset the student has seen (MacoConfig's defaults, 1 + 2 + 6
    chunks, would reach past the tiny student's 5)."""
    local = (stream_config.cache_frames - stream_config.sink_frames) // frames_per_chunk - select
    if local < 1:
        raise ValueError(f"MACO: a cache of {stream_config.cache_frames} frames leaves no local window beside "
                         f"{stream_config.sink_frames} sink and {select} selected memory frames")
    return {"local": local, "budget": budget, "select": select}
