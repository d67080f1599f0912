#!/usr/bin/env bash
# The test command: creates .venv if missing, installs, runs the whole suite on the CPU.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
workers=$(python -c 'import os; print(max(1, min(4, os.cpu_count() or 1)))')
exec python -m pytest -n "$workers" --dist loadfile -q "$@"
