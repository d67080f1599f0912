#!/usr/bin/env bash
# Downloads, here, the wheels that launch/gpu_check.sh needs on the device machine and its image lacks
# (it has jax, flax, optax, orbax, chex, einops, jaxtyping, absl, tqdm, psutil; no package registry), into
# .whl/ (git-ignored). Carry it: run(command="bash launch/gpu_check.sh", carry=[".whl"]); gpu_check.sh
# installs them with pip --no-index. Versions are this project's virtualenv's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
WHEELS=(ml-collections==1.1.0 grain==0.2.18 array-record==0.8.6 portpicker==1.6.0)
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
  -d .whl "${WHEELS[@]}"
du -sh .whl
ls .whl
