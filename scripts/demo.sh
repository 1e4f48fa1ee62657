#!/usr/bin/env bash
# The guided tour behind `make demo`: a simulated lab (labsim), the daemon
# (labd) and a user's session with labcli, from claim to release.
#
# Run as root (labsim makes network namespaces and veth pairs). Everything it
# makes is undone on exit, on success or failure: labd is stopped by its pid
# and `labsim down` removes the simulated lab.
#
#   DEMO_PAUSE=1 scripts/demo.sh    wait for Enter between steps
#   DEMO_KEEP=1  scripts/demo.sh    keep the demo directory (logs) afterwards
set -euo pipefail

# shellcheck source=scripts/demo-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/demo-common.sh"
BOARDS=3
CLASSES=rockpro64,pine64

DIR=""
LABD_PID=""
SIM_UP=0

# Runs a step that may not exist in this build yet (console, log): its
# failure is reported and the tour goes on.
optional() {
    local rc=0
    printf '$ %s\n' "$*"
    "$@" || rc=$?
    if [ "$rc" -ne 0 ]; then
        note "not available in this build yet (exit $rc): skipping this step"
    fi
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [ -n "$LABD_PID" ] && kill -0 "$LABD_PID" 2>/dev/null; then
        echo "demo: stopping labd (pid $LABD_PID) with SIGTERM"
        kill -TERM "$LABD_PID"
        for _ in $(seq 1 100); do kill -0 "$LABD_PID" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$LABD_PID" 2>/dev/null; then
            echo "demo: labd did not stop within 10 s, killing it" >&2
            kill -KILL "$LABD_PID"
        fi
        wait "$LABD_PID" 2>/dev/null
    fi
    if [ "$rc" -ne 0 ] && [ -n "$DIR" ] && [ -s "$DIR/labd.log" ]; then
        echo "demo: failed (exit $rc); the end of $DIR/labd.log:" >&2
        tail -n 30 "$DIR/labd.log" >&2
    fi
    local down_ok=1
    if [ "$SIM_UP" -eq 1 ]; then
        echo "demo: removing the simulated lab (labsim down)"
        "$LABSIM" down --dir "$DIR" || { down_ok=0; echo "demo: labsim down failed; $DIR is left as it is" >&2; }
    fi
    if [ -n "$DIR" ] && [ -d "$DIR" ]; then
        if [ "$rc" -eq 0 ] && [ "$down_ok" -eq 1 ] && [ -z "${DEMO_KEEP:-}" ]; then
            rm -rf --one-file-system "$DIR"
        else
            echo "demo: kept $DIR"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
# An interrupt goes through the same cleanup.
trap 'exit 130' INT
trap 'exit 143' TERM

[ "$(id -u)" -eq 0 ] || die "run as root: labsim creates network namespaces and veth pairs"
for b in "$LABSIM" "$LABD" "$LABCLI"; do
    [ -x "$b" ] || die "$b is missing: run 'make build' first"
done

DIR="$(mktemp -d /tmp/boardlab-demo.XXXXXX)"

say "1. A simulated lab" \
    "labsim builds $BOARDS boards ($CLASSES) with no hardware: a real snmpd as the" \
    "PoE switch, a pseudo-terminal per board as its serial adapter, a network" \
    "namespace per board as its link. It writes lab.toml and boards.d/ for labd."
show "$LABSIM" up --dir "$DIR" --boards "$BOARDS" --classes "$CLASSES"
SIM_UP=1
show ls "$DIR" "$DIR/boards.d"
note "every claim gets a jail: jail = \"linux\" in lab.toml, and our ssh key in keys.d"
sed -i 's/^jail = "none"/jail = "linux"/' "$DIR/lab.toml"
mkdir -p "$DIR/keys.d"
ssh-keygen -q -t ed25519 -N '' -C demo -f "$DIR/demo_key"
cp "$DIR/demo_key.pub" "$DIR/keys.d/root.pub"
cat >>"$DIR/lab.toml" <<EOF

[jail]
root_dir = "$DIR/jails"
keys_dir = "$DIR/keys.d"
pool = "10.241.0.0/24"
board_net = "172.27.0.0/20"
EOF
show tail -n 6 "$DIR/lab.toml"
pause

say "2. The daemon" \
    "labd reads $DIR/lab.toml and boards.d/, starts one actor per board and" \
    "listens on $DIR/labd.sock. Its log goes to $DIR/labd.log."
show "$LABD" check --config "$DIR"
printf '$ %s --config %s > %s 2>&1 &\n' "$LABD" "$DIR" "$DIR/labd.log"
"$LABD" --config "$DIR" >"$DIR/labd.log" 2>&1 &
LABD_PID=$!
for _ in $(seq 1 200); do
    [ -S "$DIR/labd.sock" ] && break
    kill -0 "$LABD_PID" 2>/dev/null || die "labd exited before opening its socket"
    sleep 0.1
done
[ -S "$DIR/labd.sock" ] || die "labd did not open $DIR/labd.sock within 20 s"
export LABD_SOCKET="$DIR/labd.sock"
note "labd is running as pid $LABD_PID; LABD_SOCKET=$LABD_SOCKET"
pause

say "3. What the lab offers" \
    "Users see classes of boards, not boards: any free board of a class will do."
show "$LABCLI" classes
show "$LABCLI" status
pause

say "4. Claim a board" \
    "Claim any rockpro64 and power it on at once. --json gives the reply as one" \
    "JSON object: it carries the board's name and the handle, the secret that" \
    "every later request about this claim needs, and the claim's jail: an" \
    "isolated system on the board's own network where we are root."
claim_shown rockpro64
note "claimed $BOARD, handle $HANDLE"
JAIL_IP="$(printf '%s\n' "$CLAIM" | json_str ip)"
KNOWN="$(printf '%s\n' "$CLAIM" | json_str known_hosts)"
[ -n "$JAIL_IP" ] && [ -n "$KNOWN" ] || die "no jail in the claim reply"
printf '%s\n' "$KNOWN" >"$DIR/known_hosts"
pause

say "5. Into the jail" \
    "ssh in as root with the key from keys.d, the jail's host key checked against" \
    "the known_hosts line of the claim reply. The jail holds the board's link as" \
    "'board', serves it DHCP and TFTP (dnsmasq) and exports /nfsroot over NFSv4."
SSH=(ssh -i "$DIR/demo_key" -o "UserKnownHostsFile=$DIR/known_hosts" -o StrictHostKeyChecking=yes -o BatchMode=yes -o LogLevel=ERROR "root@$JAIL_IP")
show "${SSH[@]}" 'id -un; hostname; ip -br addr show dev board'
note "a boot script for TFTP and a file for the board's NFS root:"
show "${SSH[@]}" "printf 'echo booted from the jail\\n' > /tftpboot/boot.scr && echo hello from the jail > /nfsroot/hello.txt && ls -l /tftpboot /nfsroot"
note "power-cycle the board from inside the jail: labcli needs no handle there"
show "${SSH[@]}" 'labcli power-cycle'
note "the board net-boots from the jail: DHCP, TFTP of boot.scr, then NFS"
for _ in $(seq 1 100); do
    "$LABCLI" log "$HANDLE" 2>/dev/null | grep -q "NFS: read" && break
    sleep 0.2
done
show "$LABCLI" log "$HANDLE" --tail 6
pause

say "6. The switch's view" \
    "labd set the board's PoE port through SNMP (POE-MIB) and read it back." \
    "labsim asks its snmpd what the port is now:"
show "$LABSIM" power --dir "$DIR" "$BOARD"
pause

say "7. The console" \
    "The powered board prints its boot banner, DHCP lease and TFTP fetch on its" \
    "serial line; labd keeps the claim's log of it. The board answers on the" \
    "line too: here we type 'version' and 'help' into a console session."
sleep 3
show "$LABCLI" log "$HANDLE" --tail 20
printf '$ (type "version" and "help") | timeout 3 %s console %s\n' "$LABCLI" "$HANDLE"
rc=0
timeout 3 "$LABCLI" console "$HANDLE" < <(sleep 0.5; printf 'version\r'; sleep 0.5; printf 'help\r'; sleep 3) || rc=$?
echo
# 124: still streaming when `timeout` stopped it, which is the good case.
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; then
    note "the console session failed (exit $rc)"
fi
note "interactively: labcli console HANDLE, and ~. after a newline to leave"
pause

say "8. Power off" \
    "The claimant controls the power of the board: power-on, power-off, power-cycle."
show "$LABCLI" power-off "$HANDLE"
show "$LABSIM" power --dir "$DIR" "$BOARD"
pause

say "9. Release" \
    "Releasing gives the board back to the lab (powered off); the handle is dead" \
    "and the jail is gone with its data."
show "$LABCLI" release "$HANDLE"
show "$LABCLI" status
if ip netns list | grep -q "^blj"; then note "a jail's namespace is left: $(ip netns list | grep '^blj')"; else note "no jail namespace is left (ip netns list)"; fi
pause

say "10. For operators" \
    "SIGUSR1 makes labd write its status dump to its log:"
show kill -USR1 "$LABD_PID"
sleep 1
show tail -n 15 "$DIR/labd.log"

say "Done" "labd is stopped with SIGTERM (its graceful stop) and the simulated lab removed."
