#!/usr/bin/env bash
# Installs the pinned Synapse (deploy/SYNAPSE_VERSION) from PyPI into a project-local venv
# (default deploy/.venv, gitignored), and MedMesh's Synapse module (policy-module/synapse-module)
# into the same venv; with the `oidc` extra (authlib), for single sign-on with an organisation's
# identity provider. Idempotent: returns in well under a second when the exact Synapse version,
# authlib and the same module source are already there (a venv without authlib gets it added).
# With MEDMESH_SYNAPSE_REDIS=1 (an organisation runs Synapse workers) the `redis` extra too
# (txredisapi, hiredis: replication between the processes); added to an existing venv, which is
# otherwise left as it is.
# Needs python3 >= 3.10 with the venv module.
#   usage: deploy/install-synapse.sh [venv-dir]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VERSION="$(tr -d '[:space:]' < "$HERE/SYNAPSE_VERSION")"
VENV="${1:-$HERE/.venv}"
PY="${PYTHON:-python3}"
MODULE="$HERE/../policy-module/synapse-module"
# The module is reinstalled whenever its source changes (a hash of its files, kept in the venv).
module_hash() { (cd "$MODULE" && find . -name '*.py' -o -name pyproject.toml | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-64); }
install_module() {
  local want; want="$(module_hash)"
  [ "$(cat "$VENV/.medmesh-synapse-module" 2>/dev/null)" = "$want" ] && return 0
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    --force-reinstall "$MODULE" &&
    "$VENV/bin/python" -c 'import medmesh_synapse' &&
    echo "$want" > "$VENV/.medmesh-synapse-module" &&
    echo "MedMesh Synapse module installed in $VENV"
}

EXTRAS="postgres,oidc"
IMPORTS="synapse, psycopg2, authlib"
if [ "${MEDMESH_SYNAPSE_REDIS:-0}" = 1 ]; then EXTRAS="$EXTRAS,redis"; IMPORTS="$IMPORTS, txredisapi"; fi
installed() {
  [ -x "$VENV/bin/python" ] &&
    "$VENV/bin/python" -c "import sys, importlib.metadata as m, $IMPORTS; sys.exit(0 if m.version('matrix-synapse') == '$VERSION' else 1)" 2>/dev/null
}
if installed; then
  echo "Synapse $VERSION already installed in $VENV"
  install_module || { echo "error: the MedMesh Synapse module did not install into $VENV" >&2; exit 1; }
  exit 0
fi

if ! "$PY" -c 'import sys, venv, ensurepip; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
  echo "error: $PY must be Python >= 3.10 with the venv and ensurepip modules (Debian: apt-get install python3-venv)" >&2
  exit 1
fi
echo "Installing matrix-synapse[$EXTRAS]==$VERSION into $VENV ..."
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "matrix-synapse[$EXTRAS]==$VERSION"
installed || { echo "error: Synapse $VERSION did not install correctly into $VENV" >&2; exit 1; }
echo "Synapse $VERSION installed in $VENV"
install_module || { echo "error: the MedMesh Synapse module did not install into $VENV" >&2; exit 1; }
