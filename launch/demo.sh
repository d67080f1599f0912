#!/usr/bin/env bash
# The main job on the embedded default: creates .venv if missing, installs, then loads the committed
# tiny student (worldscape_jax/assets/student_tiny) and streams a held-out SynthWorld scene with the
# MACO cache along a path that leaves a place and returns (289 frames), writing runs/demo/
# {generated_vs_truth.mp4, camera_map.png, contact_sheet.png, paths.png, psnr_blocks.png, metrics.json,
# report.md, videos.npz} and printing frames per second, revisit PSNR and Trajectory Accuracy.
# Trains nothing. Extra flags go to launch/stream_demo.py (e.g. --scenes=8, --memory=rolling).
# The teacher's offline clip generation is `python launch/generate.py`.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec python launch/stream_demo.py "$@"
