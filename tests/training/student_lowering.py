"""Run as a subprocess with 8 virtual CPU devices: lower and compile the wan1_3b Self-Forcing train step.

The generator, critic, frozen teacher and frozen VAE share the step. Arguments: height width
rollout_chunks (the config's are 480 832 9; tests pass a smaller frame to keep compile time short,
which changes no shape of the networks). Prints one JSON line.
"""

import json
import sys

import jax
import jax.numpy as jnp

from worldscape_jax.configs import student as student_config
from worldscape_jax.training import loop, sharding
from worldscape_jax.training.stages import self_forcing


def main(height: int, width: int, chunks: int) -> None:
    config = student_config.get_config("wan1_3b")
    config.global_batch = 4
    config.data.height, config.data.width = height, width
    config.student.rollout_chunks = chunks
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 1, 4, 2
    setup = loop.build(config)
    frames = self_forcing.rollout_frames(config)
    batch = {
        "first_frame": jax.ShapeDtypeStruct((4, 1, height, width, 3), jnp.uint8),
        "c2w": jax.ShapeDtypeStruct((4, frames, 4, 4), jnp.float32),
        "intrinsics": jax.ShapeDtypeStruct((4, frames, 4), jnp.float32),
    }
    shardings = sharding.batch_shardings(batch, setup.mesh)
    batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=shardings[k]) for k, v in batch.items()}
    compiled = loop.compile_step(setup, loop.abstract_target(setup), batch, shardings)
    params = setup.abstract_state.params
    counts = {name: sum(int(x.size) for x in jax.tree.leaves(tree)) for name, tree in params.items()}
    q = setup.state_shardings.params["generator"]["blocks"]["self_attn"]["q"]["kernel"]
    print(json.dumps({"devices": jax.device_count(), "mesh": dict(setup.mesh.shape), "params": counts,
                      "q_kernel_spec": str(q.spec), "compiled": compiled is not None}))


if __name__ == "__main__":
    main(*map(int, sys.argv[1:4]))
