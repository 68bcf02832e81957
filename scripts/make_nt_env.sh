#!/usr/bin/env bash
# Create the pinned neural-tangents (NT) reference environment at PATH.
#
# NT is our oracle, never a dependency: its last release (0.6.5) needs
# JAX <= 0.4.25 and imports TensorFlow, so it lives in its own virtualenv
# (see DESIGN.md, "Why we write our own kernel engine"). This script builds that
# environment:
#
#   python3.11 -m venv PATH
#   PATH/bin/pip install 'jax==0.4.25' 'jaxlib==0.4.25' \
#       'neural-tangents==0.6.5' 'numpy<2'
#
# It pulls TensorFlow (~2.6 GB) and takes about a minute. It is idempotent: if
# PATH/bin/python already imports neural_tangents 0.6.5 it does nothing.
#
# Usage:
#   scripts/make_nt_env.sh /work/envs/ntref
#   PYTHON=/path/to/python3.11 scripts/make_nt_env.sh PATH   # other interpreter
#
# Then regenerate the golden fixture with it (see scripts/nt_golden.py):
#   PATH/bin/python scripts/nt_golden.py
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 PATH   (creates the NT 0.6.5 reference venv at PATH)" >&2
  exit 2
fi
env_dir="$1"
python="${PYTHON:-python3.11}"
nt_version="0.6.5"

has_nt() {
  [[ -x "$env_dir/bin/python" ]] && "$env_dir/bin/python" - "$nt_version" \
    >/dev/null 2>&1 <<'EOF'
import sys
import neural_tangents
sys.exit(0 if neural_tangents.__version__ == sys.argv[1] else 1)
EOF
}

if has_nt; then
  echo "$env_dir already has neural-tangents $nt_version; nothing to do."
  exit 0
fi

if ! command -v "$python" >/dev/null 2>&1; then
  echo "error: '$python' not found; NT 0.6.5 needs Python 3.11 (set PYTHON=...)." >&2
  exit 1
fi

"$python" -m venv "$env_dir"
"$env_dir/bin/python" -m pip install --upgrade pip
"$env_dir/bin/python" -m pip install 'jax==0.4.25' 'jaxlib==0.4.25' \
  "neural-tangents==$nt_version" 'numpy<2'

if ! has_nt; then
  echo "error: $env_dir/bin/python cannot import neural_tangents $nt_version." >&2
  exit 1
fi
echo "created $env_dir with neural-tangents $nt_version."
