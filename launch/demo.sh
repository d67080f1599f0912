#!/usr/bin/env bash
# The main job on the embedded default: creates .venv if missing, installs, then runs the tiny model.
# Until a trained tiny teacher is committed this is the tiny DiT benchmark (streaming step, chunk, teacher).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec python launch/bench_dit.py --scale=tiny "$@"
