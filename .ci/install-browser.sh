#!/usr/bin/env bash
# Installs what the browser test (tests/test_ui_browser.py) needs on a fresh Debian machine:
# Debian's own Chromium (playwright drives it through executable_path; `playwright install` is never
# run, it downloads browsers). Idempotent and quiet; needs root (CI has it) unless chromium is present.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-browser: /usr/bin/chromium is missing and installing it needs root: sudo $0" >&2
    exit 1
fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        chromium chromium-driver fonts-dejavu-core; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-browser: apt-get failed (log above)" >&2
    exit 1
fi
test -x /usr/bin/chromium
echo "install-browser: installed $(/usr/bin/chromium --version 2>/dev/null)"
