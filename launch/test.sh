#!/usr/bin/env bash
# The test command: creates .venv if missing, installs, runs the suite on the CPU.
# By default it leaves out tests marked `slow` (end-to-end runs of minutes each: 8-device wan1_3b
# compiles, kill-and-resume of the Self-Forcing stage, the GPU check's dry run); run them with
# `bash launch/test.sh -m slow` (or everything with `bash launch/test.sh -m "slow or not slow"`).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# The play page's browser test drives Debian's chromium (tests/play/test_play_browser.py); install it
# when missing and we may (root, as CI is). Without it that one test is skipped and says why.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing chromium for the browser test (apt-get)" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ||
    echo "warning: could not install chromium; the browser test will be skipped" >&2
fi
workers=$(python -c 'import os; print(max(1, min(4, os.cpu_count() or 1)))')
marks=(-m "not slow")
for arg in "$@"; do [ "$arg" = "-m" ] && marks=(); done
exec python -m pytest -n "$workers" --dist loadfile -q "${marks[@]}" "$@"
