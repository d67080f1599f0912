"""Run as a subprocess with 8 virtual CPU devices: lower and compile the wan1_3b teacher train step.

Prints one JSON line with the mesh, the parameter count and the sharding of a block kernel.
"""

import json
import sys

import jax

from worldscape_jax.configs import teacher as teacher_config
from worldscape_jax.training import loop, sharding
from worldscape_jax.training.stages import teacher


def main(frames: int, height: int, width: int) -> None:
    config = teacher_config.get_config("wan1_3b")
    config.global_batch = 4
    config.data.frames, config.data.height, config.data.width = frames, height, width
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 1, 4, 2
    setup = loop.build(config)
    batch = teacher.batch_spec(config, config.global_batch)
    shardings = sharding.batch_shardings(batch, setup.mesh)
    batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=shardings[k]) for k, v in batch.items()}
    compiled = loop.compile_step(setup, loop.abstract_target(setup), batch, shardings)
    params = setup.abstract_state.params
    count = sum(int(x.size) for x in jax.tree.leaves(params))
    q_sharding = setup.state_shardings.params["blocks"]["self_attn"]["q"]["kernel"]
    print(json.dumps({"devices": jax.device_count(), "mesh": dict(setup.mesh.shape), "params": count,
                      "q_kernel_spec": str(q_sharding.spec), "compiled": compiled is not None}))


if __name__ == "__main__":
    main(*map(int, sys.argv[1:4]))
