# Shared by scripts/demo.sh and scripts/demo-cluster.sh (sourced, not run):
# where the binaries are, and how a step of a tour is told.
# shellcheck shell=bash

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release"
LABSIM="$BIN/labsim"
LABD="$BIN/labd"
LABCLI="$BIN/labcli"
export LABSIM LABD LABCLI

say() { printf '\n\033[1m== %s\033[0m\n' "$1"; shift; local line; for line in "$@"; do printf '   %s\n' "$line"; done; }
note() { printf '   (%s)\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }
pause() { if [ -n "${DEMO_PAUSE:-}" ] && [ -t 0 ]; then read -r -p '   [Enter] ' _; fi; }
die() { printf '%s: %s\n' "$(basename "$0" .sh)" "$*" >&2; exit 1; }

# First "key": "string" value of a JSON object, without needing python or jq.
json_str() {
    sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\\([^\"]*\\)\".*/\\1/p" | head -n 1
}

# Claims a board of class $1 with power through labcli, showing the reply;
# sets CLAIM, HANDLE and BOARD.
claim_shown() {
    printf '$ %s\n' "$LABCLI --json claim $1 --power"
    CLAIM="$("$LABCLI" --json claim "$1" --power)"
    printf '%s\n' "$CLAIM"
    HANDLE="$(printf '%s\n' "$CLAIM" | json_str handle)"
    BOARD="$(printf '%s\n' "$CLAIM" | json_str board)"
    [ -n "$HANDLE" ] || die "no handle in the claim reply"
    [ -n "$BOARD" ] || die "no board in the claim reply"
}
