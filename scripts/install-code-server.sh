#!/usr/bin/env bash
# Install code-server 4.100.3 (VS Code 1.100.3, the last release on Node 20) into a cache folder
# outside git, for the VS Code end-to-end test (tests/test_vscode_e2e.py). Its own install
# scripts download ripgrep and fail without internet, so scripts are off and the native modules
# are rebuilt from source; Debian's ripgrep stands in. See shared/recipes/vscode-in-browser.md.
# Skipped when a complete install is already there (marker file written last).
set -euo pipefail
VERSION=4.100.3
DEST="${AGENTLS_CODE_SERVER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/agentls-ci/code-server-$VERSION}"
MARKER="$DEST/.complete"
if [[ -f "$MARKER" ]]; then
    echo "code-server $VERSION already installed in $DEST"
    exit 0
fi
RG="$(command -v rg || true)"
if [[ -z "$RG" ]]; then
    echo "ripgrep (rg) is needed: apt-get install -y ripgrep" >&2
    exit 1
fi
rm -rf "$DEST"
mkdir -p "$DEST"
cd "$DEST"
echo '{"name": "agentls-code-server", "private": true}' > package.json
export npm_config_yes=true npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
npm install --no-save --ignore-scripts "code-server@$VERSION" >/dev/null
npm rebuild argon2 >/dev/null
cd node_modules/code-server/lib/vscode
npm install --omit=dev --ignore-scripts >/dev/null
mkdir -p node_modules/@vscode/ripgrep/bin
cp "$RG" node_modules/@vscode/ripgrep/bin/rg
npm rebuild >/dev/null
ln -sfn node_modules node_modules.asar
(cd bin/remote-cli && ln -sfn code-linux.sh code-server)
(cd bin/helpers && ln -sfn browser-linux.sh browser.sh)
(cd extensions && npm install --omit=dev >/dev/null)
touch "$MARKER"
echo "code-server $VERSION installed in $DEST"
