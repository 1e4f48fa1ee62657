#!/usr/bin/env bash
# Runs every cargo fuzz target of fuzz/ for a bounded time (CI-sized runs).
#
#   scripts/fuzz.sh [SECONDS]     seconds per target, default 60
#
# Needs only the stable toolchain: cargo fuzz's sanitizer flags are nightly
# flags, allowed here by RUSTC_BOOTSTRAP=1. Installs cargo-fuzz if missing.
# New inputs go to a scratch directory; only those that add coverage are
# merged into fuzz/corpus/<target>/ (review and commit them). A crash leaves
# its input in fuzz/artifacts/<target>/ and makes the script fail.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v cargo >/dev/null 2>&1 && [ -f "${HOME:-/root}/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "${HOME:-/root}/.cargo/env"
fi

secs="${1:-60}"
case "$secs" in
    ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
targets=(request forced_command config)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
# The fuzz build has its own target directory: its flags differ from the
# normal build's, sharing one would rebuild everything each time.
target_dir="${FUZZ_TARGET_DIR:-fuzz/target}"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "$scratch/$t"
    echo "fuzz: $t for ${secs}s"
    cargo fuzz run --target-dir "$target_dir" "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -max_len=8192 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
    cargo fuzz run --target-dir "$target_dir" "$t" "fuzz/corpus/$t" "$scratch/$t" -- \
        -merge=1 -max_len=8192 2>&1 | grep -E 'MERGE-OUTER: [0-9]+ new files' || true
done
echo "fuzz: no crash in ${#targets[@]} targets x ${secs}s"
