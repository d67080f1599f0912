# Sourced by launch/*.sh: creates .venv with Python >= 3.12 when it is missing,
# installs the project (editable) with its test extras, and activates it.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

pick_python() {
  for candidate in python3.12 python3 python3.13; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    v=$(pyenv versions --bare | grep -E '^3\.1[2-9]' | head -n 1 || true)
    if [ -n "$v" ]; then echo "$(pyenv root)/versions/$v/bin/python3"; return 0; fi
  fi
  echo "error: worldscape-jax needs Python >= 3.12 (found none on PATH or in pyenv)" >&2
  return 1
}

stamp=.venv/.installed-$(cat pyproject.toml launch/constraints.txt | sha1sum | cut -c1-12)
if [ ! -x .venv/bin/python ]; then
  py=$(pick_python)
  echo "creating .venv with $($py --version)" >&2
  "$py" -m venv .venv
fi
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # launch/constraints.txt: the versions CI last passed with (see its header)
  .venv/bin/python -m pip install -q -e ".[test]" -c launch/constraints.txt
  rm -f .venv/.installed-*; touch "$stamp"
fi
# shellcheck disable=SC1091
source .venv/bin/activate
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
