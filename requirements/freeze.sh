#!/usr/bin/env bash
# Writes what a venv has installed as a pip constraints file (`make lock` writes requirements/lock*.txt
# with it; `make setup` installs with `pip install -c` that file, so a fresh clone gets these versions).
#   requirements/freeze.sh VENV OUT [PACKAGE...]      PACKAGEs are left out of OUT
# Every distribution is pinned with ==, except pip (the Makefile upgrades it first) and editable installs
# (l2s itself). The local version label is dropped, torch 2.13.0+cpu becomes torch==2.13.0: that pin
# matches the CPU wheel where one is on disk or on the index (pip prefers it, it sorts above the plain
# 2.13.0) and PyPI's build elsewhere. OUT is replaced only once it is complete.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 VENV OUT [PACKAGE-TO-LEAVE-OUT...]" >&2
    exit 2
fi
venv=$1
out=$2
shift 2
tmp="$(mktemp "$out.XXXXXX")"
trap 'rm -f "$tmp"' EXIT

{
    echo "# pip constraints written by \`make lock\` (requirements/freeze.sh): the versions a fresh unconstrained"
    echo "# install of the Makefile's recipe resolved to. \`make setup\` installs with \`-c\` this file. Do not edit."
    "$venv/bin/python" -m pip list --format=freeze --exclude-editable --disable-pip-version-check |
        awk -v skip="pip l2s $*" '
            BEGIN { n = split(tolower(skip), s, " "); for (i = 1; i <= n; i++) { gsub(/[_.]/, "-", s[i]); left_out[s[i]] = 1 } }
            {
                split($0, nv, "==")
                name = tolower(nv[1]); gsub(/[_.]/, "-", name)
                if (name in left_out) next
                sub(/\+.*/, "", nv[2])
                print nv[1] "==" nv[2]
            }' |
        LC_ALL=C sort -t = -k 1,1f
} >"$tmp"
chmod 644 "$tmp"
mv "$tmp" "$out"
trap - EXIT
