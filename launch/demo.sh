#!/usr/bin/env bash
# The main job on the embedded default: creates .venv if missing, installs, then loads the committed
# tiny teacher and tiny VAE (worldscape_jax/assets/) and generates camera-controlled video for a
# held-out SynthWorld scene and a WASD path, writing runs/demo/{generated_vs_truth.mp4,
# contact_sheet.png, paths.png, metrics.json, report.md} and printing the metrics against ground truth.
# Trains nothing. Extra flags go to launch/generate.py (e.g. --actions=w,d --scenes=4).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec python launch/generate.py "$@"
