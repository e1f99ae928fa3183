#!/usr/bin/env bash
# Installs the pinned Synapse (deploy/SYNAPSE_VERSION) from PyPI into a project-local venv
# (default deploy/.venv, gitignored). Idempotent: returns in well under a second when the exact
# version is already there. Needs python3 >= 3.10 with the venv module.
#   usage: deploy/install-synapse.sh [venv-dir]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VERSION="$(tr -d '[:space:]' < "$HERE/SYNAPSE_VERSION")"
VENV="${1:-$HERE/.venv}"
PY="${PYTHON:-python3}"

installed() {
  [ -x "$VENV/bin/python" ] &&
    "$VENV/bin/python" -c "import sys, importlib.metadata as m, synapse, psycopg2; sys.exit(0 if m.version('matrix-synapse') == '$VERSION' else 1)" 2>/dev/null
}
if installed; then
  echo "Synapse $VERSION already installed in $VENV"
  exit 0
fi

if ! "$PY" -c 'import sys, venv, ensurepip; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
  echo "error: $PY must be Python >= 3.10 with the venv and ensurepip modules (Debian: apt-get install python3-venv)" >&2
  exit 1
fi
echo "Installing matrix-synapse[postgres]==$VERSION into $VENV ..."
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "matrix-synapse[postgres]==$VERSION"
installed || { echo "error: Synapse $VERSION did not install correctly into $VENV" >&2; exit 1; }
echo "Synapse $VERSION installed in $VENV"
