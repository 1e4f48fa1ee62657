#!/usr/bin/env bash
# The tour behind `make demo-cluster`: one lab of three simulated hosts
# whose labds share their claims through a three-member etcd on loopback.
# A claim through host 1 lands on host 3, its console is used through
# host 1, host 3's labd is killed (its board shows offline everywhere, its
# claim kept) and restarted.
#
# Run as root. Everything it starts is stopped by its pid on exit, the
# simulated labs are removed (`labsim down`) and the directory deleted.
#
#   DEMO_PAUSE=1 scripts/demo-cluster.sh   wait for Enter between steps
#   DEMO_KEEP=1  scripts/demo-cluster.sh   keep the directory (logs)
set -euo pipefail

# shellcheck source=scripts/demo-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/demo-common.sh"

DIR=""
ETCD_PIDS=()
LABD_PIDS=(0 0 0 0)
SIMS=()

stop_pid() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    for i in 1 2 3; do
        [ "${LABD_PIDS[$i]}" -ne 0 ] && stop_pid "${LABD_PIDS[$i]}"
    done
    for pid in "${ETCD_PIDS[@]}"; do stop_pid "$pid"; done
    for s in "${SIMS[@]}"; do "$LABSIM" down --dir "$s" >/dev/null || echo "demo-cluster: labsim down $s failed" >&2; done
    if [ -n "$DIR" ] && [ -d "$DIR" ]; then
        if [ "$rc" -eq 0 ] && [ -z "${DEMO_KEEP:-}" ]; then rm -rf --one-file-system "$DIR"; else echo "demo-cluster: kept $DIR"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ "$(id -u)" -eq 0 ] || die "run as root: labsim creates namespaces and runs snmpd"
for b in "$LABSIM" "$LABD" "$LABCLI" "$(command -v etcd)" "$(command -v etcdctl)"; do
    [ -x "$b" ] || die "$b is missing: run 'make build' (and 'make deps') first"
done

# A free loopback TCP port.
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        [ -z "$(ss -Htln "sport = :$p")" ] && { echo "$p"; return; }
    done
}

DIR="$(mktemp -d /tmp/boardlab-cluster.XXXXXX)"

say "1. etcd: three members on loopback" \
    "The lab's claims live in etcd; losing one member changes nothing."
CLUSTER="" URLS="" ENDPOINTS=""
declare -a CP PP
for i in 0 1 2; do
    CP[$i]=$(free_port); PP[$i]=$(free_port)
    CLUSTER+="${CLUSTER:+,}m$i=http://127.0.0.1:${PP[$i]}"
    URLS+="${URLS:+,}http://127.0.0.1:${CP[$i]}"
    ENDPOINTS+="${ENDPOINTS:+,}127.0.0.1:${CP[$i]}"
done
for i in 0 1 2; do
    etcd --name "m$i" --data-dir "$DIR/etcd-m$i" \
        --listen-client-urls "http://127.0.0.1:${CP[$i]}" --advertise-client-urls "http://127.0.0.1:${CP[$i]}" \
        --listen-peer-urls "http://127.0.0.1:${PP[$i]}" --initial-advertise-peer-urls "http://127.0.0.1:${PP[$i]}" \
        --initial-cluster "$CLUSTER" --initial-cluster-state new --initial-cluster-token "demo-$$" \
        >"$DIR/etcd-m$i.log" 2>&1 &
    ETCD_PIDS+=($!)
done
for _ in $(seq 1 100); do
    ETCDCTL_API=3 etcdctl --endpoints="$ENDPOINTS" put /demo up >/dev/null 2>&1 && break
    sleep 0.2
done
show env ETCDCTL_API=3 etcdctl --endpoints="$ENDPOINTS" member list
pause

say "2. Three hosts" \
    "labsim builds each host's boards (lab1, lab2: rockpro64; lab3: pine64 with a" \
    "console), writes its [cluster] table and signs its certificate with one lab CA."
start_host() {
    local i=$1 classes=$2; shift 2
    local d="$DIR/lab$i"
    show "$LABSIM" up --dir "$d" --boards 1 --classes "$classes" --host "lab$i" --etcd "$URLS" --ca "$DIR/ca" "$@"
    SIMS+=("$d")
}
launch() {
    local i=$1 d="$DIR/lab$1"
    "$LABD" --config "$d" >>"$d/labd.log" 2>&1 &
    LABD_PIDS[$i]=$!
    for _ in $(seq 1 300); do [ -S "$d/labd.sock" ] && return; sleep 0.1; done
    die "labd of lab$i did not start: $(tail -n 5 "$d/labd.log")"
}
start_host 1 rockpro64 --no-net --no-console
start_host 2 rockpro64 --no-net --no-console
start_host 3 pine64 --no-net
show sed -n '/\[cluster\]/,$p' "$DIR/lab1/lab.toml"
for i in 1 2 3; do launch "$i"; done
export LABD_SOCKET="$DIR/lab1/labd.sock"
sleep 1
note "three labds running; labcli below talks to lab1's socket"
pause

say "3. One lab, from any front door" "status and classes through lab1 show every host's boards."
show "$LABCLI" status
show "$LABCLI" classes
pause

say "4. A claim through lab1 lands on lab3" "Only lab3 has a pine64: lab1 forwards the claim over the peer channel (TLS, both sides certified)."
claim_shown pine64
show "$LABSIM" power --dir "$DIR/lab3" "$BOARD"
pause

say "5. Its console through lab1" "The log, then a session: lab1 pipes the bytes to lab3 and back."
sleep 3
show "$LABCLI" log "$HANDLE" --tail 5
printf '$ (type "version") | timeout 3 %s console %s\n' "$LABCLI" "$HANDLE"
rc=0
timeout 3 "$LABCLI" console "$HANDLE" < <(sleep 0.5; printf 'version\r'; sleep 3) || rc=$?
echo
[ "$rc" -eq 0 ] || [ "$rc" -eq 124 ] || note "the console session failed (exit $rc)"
pause

say "6. lab3's labd killed" "Within its lease (5 s) every front door shows its board offline, the claim kept."
show kill -KILL "${LABD_PIDS[3]}"
wait "${LABD_PIDS[3]}" 2>/dev/null || true
LABD_PIDS[3]=0
for _ in $(seq 1 100); do "$LABCLI" status | grep -q offline && break; sleep 0.2; done
show "$LABCLI" status
pause

say "7. lab3 back" "It takes its claims back from etcd; the board is claimed again, everywhere."
launch 3
for _ in $(seq 1 100); do "$LABCLI" status | grep "$BOARD" | grep -q claimed && break; sleep 0.2; done
show "$LABCLI" status
show "$LABCLI" release "$HANDLE"
for _ in $(seq 1 50); do "$LABCLI" status | grep "$BOARD" | grep -q 'available  -     off' && break; sleep 0.1; done
show "$LABCLI" status

say "Done" "labds and etcd are stopped, the simulated hosts removed."
