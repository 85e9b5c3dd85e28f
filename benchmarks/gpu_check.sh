#!/usr/bin/env bash
# The GPU check in one call, for a borrowed GPU machine (docs/GPU.md): installs the wheels carried in
# .gpu-bundle, runs benchmarks/gpu_check.py from the repository root, writes OUTDIR/gpu_check.json and
# prints the table. The script's stderr (tracebacks, progress bars, the trainers' logs) goes to
# OUTDIR/gpu_check.stderr.log; its last lines are shown when the check fails. Extra arguments go to the
# script, e.g. --smoke or --skip dpo. PYTHON picks the interpreter (default python3).
#
#   bash benchmarks/gpu_check.sh OUTDIR [gpu_check.py options]
set -euo pipefail

usage="usage: bash benchmarks/gpu_check.sh OUTDIR [gpu_check.py options, e.g. --smoke]"
if [[ $# -lt 1 || -z "$1" || "$1" == -* ]]; then
    echo "$usage" >&2
    exit 2
fi
mkdir -p -- "$1"
out=$(cd -- "$1" && pwd)  # absolute, before leaving the caller's directory
shift
if [[ -e "$out/gpu_check.json" ]]; then
    echo "gpu_check.sh: $out/gpu_check.json exists; remove it or pass another OUTDIR" >&2
    exit 2
fi
cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.."

log="$out/gpu_check.stderr.log"
rc=0
PYTHONUNBUFFERED=1 "${PYTHON:-python3}" benchmarks/gpu_check.py --install-bundle \
    --out "$out/gpu_check.json" "$@" 2>"$log" || rc=$?
if ((rc != 0)); then
    echo "--- exit $rc; the last lines of $log:" >&2
    tail -n 30 "$log" >&2
fi
exit "$rc"
