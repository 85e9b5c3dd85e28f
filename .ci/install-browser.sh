#!/usr/bin/env bash
# Installs what the browser test (tests/test_ui_browser.py) needs on a fresh Debian machine:
# Debian's own Chromium (playwright drives it through executable_path; `playwright install` is never
# run, it downloads browsers). Idempotent and quiet; needs root (CI has it) unless chromium is present.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-browser: /usr/bin/chromium is missing and this needs root: sudo $0" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
/usr/bin/chromium --version
