#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine; safe to run again (it skips what is done).
#   1. Debian packages for headless MuJoCo rendering (EGL/Mesa) and chromium (browser tests) when missing, and
#      PostgreSQL (for its tests) when no initdb is found.
#   2. .venv with torch==2.13.0 (the local CPU wheel) first, then the project and its dev extras under
#      constraints.txt so nothing can pull another torch build or torchvision.
#   3. LeRobot (tests only: its own loader checks our exports) without its dependencies, because it pins an
#      older torch and torchvision; the pieces its dataset loader needs are listed in the dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
# chromium: the browser tests (tests/e2e) and bench/bench_browser.py drive it through Python playwright.
APT_PACKAGES=(libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 chromium)
# tests/storage/test_postgres.py starts a throwaway PostgreSQL server; any installed initdb will do.
if ! command -v initdb >/dev/null 2>&1 && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  APT_PACKAGES+=(postgresql)
fi
LEROBOT_VERSION=0.4.4

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing Debian packages (headless rendering, PostgreSQL for tests): ${missing[*]}" >&2
    echo "setup: run as root, or: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

stamp="$VENV/.installed"
inputs=(pyproject.toml constraints.txt scripts/setup.sh)
if [ -f "$stamp" ] && [ -z "$(find "${inputs[@]}" -newer "$stamp" 2>/dev/null)" ]; then
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip
"${pip[@]}" install torch==2.13.0
"${pip[@]}" install -c constraints.txt -e ".[dev]"
"${pip[@]}" install --no-deps "lerobot==$LEROBOT_VERSION"
if "$VENV/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torchvision') is None)"; then
  echo "setup: torchvision got installed; it has no CPU build for torch 2.13 and must not be a dependency" >&2
  exit 1
fi
touch "$stamp"
echo "setup: done ($VENV)"
