#!/usr/bin/env python3
"""Writes the hand-made seed files of fuzz/corpus/<target>/ (seed-*).

Run from anywhere: `python3 fuzz/seeds.py`. Files the fuzzer added (named by
their SHA-1) are left alone. Rerunning rewrites the seeds identically.
"""
import json, os, pathlib

root = pathlib.Path(__file__).resolve().parent / "corpus"

def write(target, name, data):
    d = root / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    (d / f"seed-{name}").write_bytes(data)

H = "bl-0123456789abcdef0123456789abcdef"
J = lambda o: json.dumps(o, separators=(",", ":"))

# ---- request: one line as labd reads it -------------------------------------
req = {
    "classes": {"id": 1, "fn": "classes", "available": True},
    "status": {"id": 2, "fn": "status", "mine": True},
    "claim": {"id": 3, "fn": "claim", "class": "rockpro64", "power": True, "lease": 3600, "wait": 60},
    "claim-min": {"fn": "claim", "class": "rockpro64"},
    "renew": {"id": "r", "fn": "renew", "handle": H, "lease": 7200},
    "reinit": {"id": None, "fn": "reinit", "handle": H},
    "release": {"id": [1, 2], "fn": "release", "handle": H},
    "power_on": {"id": {"a": 1}, "fn": "power_on", "handle": H},
    "power_off": {"fn": "power_off", "handle": H},
    "power_cycle": {"fn": "power_cycle"},
    "console": {"fn": "console", "handle": H, "read_only": True},
    "console_log": {"fn": "console_log", "handle": H, "tail": 50},
    "whoami": {"fn": "whoami", "user": "root"},
    "whoami-as": {"fn": "whoami", "as": "bltest-bob"},
    "dump": {"fn": "dump"},
    "maintenance": {"fn": "maintenance", "board": "rockpro64-1", "on": True},
    "force_release": {"fn": "force_release", "board": "rockpro64-1"},
    "debug_panic": {"fn": "debug_panic", "board": "rockpro64-1"},
    "unknown-fn": {"id": 9, "fn": "frobnicate"},
    "unknown-key": {"fn": "status", "colour": "red"},
    "wrong-type-class": {"fn": "claim", "class": 5},
    "wrong-type-power": {"fn": "claim", "class": "x", "power": "yes"},
    "wrong-type-handle": {"fn": "release", "handle": ["bl-1"]},
    "wrong-type-on": {"fn": "maintenance", "board": "b", "on": 1},
    "wrong-type-as": {"fn": "whoami", "as": 7},
    "fn-number": {"fn": 5},
    "no-fn": {"id": 1},
    "neg-lease": {"fn": "claim", "class": "x", "lease": -1},
    "traversal": {"fn": "maintenance", "board": "../../etc/passwd", "on": False},
    "shell": {"fn": "claim", "class": "$(id); `id`; rm -rf /"},
    "rtl": {"fn": "release", "handle": "bl-\u202egnp.exe"},
}
for k, v in req.items():
    write("request", k, J(v))
for name, raw in {
    "huge-float": '{"fn":"claim","class":"x","lease":1e308}',
    "u64-overflow": '{"fn":"claim","class":"x","wait":18446744073709551616}',
    "i64-min": '{"fn":"console_log","handle":"h","tail":-9223372036854775808}',
    "u64-max": '{"fn":"renew","handle":"h","lease":18446744073709551615}',
    "dup-keys": '{"fn":"whoami","fn":"dump","as":"a","as":"b"}',
    "truncated": '{"id":1,"fn":"claim","class":"rock',
    "not-object": '[{"fn":"status"}]',
    "string": '"status"',
    "deep-nesting": '{"id":' + "[" * 200 + "]" * 200 + ',"fn":"status"}',
    "escapes": '{"fn":"claim","class":"\\u0000\\ud800\\n%s%n"}',
    "nul": '{"fn":"status"}\x00',
    "empty": "",
    "spaces": "   \t ",
}.items():
    write("request", name, raw)
write("request", "invalid-utf8", b'{"fn":"claim","class":"\xff\xfe\xc0\x80"}')
write("request", "binary", bytes(range(256)))

# ---- forced_command: $SSH_ORIGINAL_COMMAND or one stdin line ----------------
cmds = {
    "classes": "classes --available", "status": "status --mine --json",
    "claim": "claim rockpro64 --power --lease 4h --wait 30m",
    "claim-wait-forever": "claim --wait rockpro64", "renew": f"renew {H} --lease=1d",
    "reinit": f"reinit {H}", "release": f"release {H}", "power-on": f"power-on {H}",
    "power-off": "power-off", "power-cycle": f"power-cycle {H}",
    "console": f"console {H} --read-only", "log": f"log {H} --tail 100",
    "whoami": "labcli whoami", "dump": "/usr/bin/labcli dump",
    "maintenance": "maintenance rockpro64-1 on", "force-release": "force-release rockpro64-1",
    "help": "--help", "json-only": "--json", "quotes": "claim 'rock pro' \"x\\\"y\" a\\ b",
    "dashdash": "release -- -odd", "as-remote": "status --as root",
    "socket-remote": "--socket=/tmp/evil status", "semicolon": "status; rm -rf /",
    "subst": "claim \"$(id)\" `id`", "pipes": "status && id || id | id > /tmp/y",
    "newline": "status\ntouch /tmp/x", "unterminated": "status 'abc",
    "trailing-backslash": "status \\", "traversal": "maintenance ../../etc/passwd on",
    "format": "claim %s%n%x", "rtl": "release bl-\u202egnp.exe",
    "nul": "status\x00 --mine", "bad-durations": "claim x --lease 99999999999999999999s --wait 0s",
    "tail-zero": "log h --tail 0", "twice": "claim x --lease 1h --lease 2h",
    "json-line": J({"id": 4, "fn": "status", "as": "root"}),
    "json-console": J({"id": 5, "fn": "console", "handle": H}),
    "json-bad": '{"id": 6, "fn": ', "json-array": '[1,2]',
    "line-continuation": "sta\\\ntus --mine",
}
for k, v in cmds.items():
    write("forced_command", k, v)
write("forced_command", "invalid-utf8", b"claim \xff\xfe")

# ---- config: lab.toml, then board files after "\n%%\n" lines ----------------
LAB = """[daemon]
socket = "/run/boardlab/labd.sock"
state = "/var/lib/boardlab/state.db"
admins = ["ops"]
trusted_gateways = ["lab"]
socket_mode = "0660"
jail = "none"

[lease]
default = "4h"
max = "1d"

[power]
cycle_delay = "2s"
retry_max = "60s"

[console]
log_max_bytes = 4194304
log_keep = 2

[switches.poe1]
host = "192.0.2.10:161"
community = "private"
version = "2c"
timeout = "1s"
retries = 1
"""
B1 = """name  = "rockpro64-1"
class = "rockpro64"
power   = { switch = "poe1", port = 5 }
console = { match = { ID_SERIAL_SHORT = "A10K1234" }, baud = 1500000 }
network = { vlan = 101, trunk = "eth1" }
power_on_claim = true
"""
B2 = """name  = "rpi4-1"
class = "rpi4"
power   = { switch = "poe1", port = 6, group = 1 }
console = { path = "/dev/ttyUSB0", baud = 115200 }
network = { interface = "enp3s0" }
"""
S = "\n%%\n"
cfgs = {
    "valid-two": LAB + S + B1 + S + B2,
    "valid-board-only": B1,
    "valid-minimal": '[switches.s]\nhost = "h"' + S + 'name = "a"\nclass = "c"\npower = { switch = "s", port = 1 }\n',
    "example-lab": open(pathlib.Path(__file__).resolve().parent.parent / "examples/lab.toml").read() + S + B1,
    "dup-name": LAB + S + B1 + S + B1.replace("port = 5", "port = 7").replace("vlan = 101", "vlan = 102"),
    "dup-port": LAB + S + B1 + S + B2.replace("port = 6", "port = 5"),
    "dup-vlan": LAB + S + B1 + S + B2.replace('network = { interface = "enp3s0" }', 'network = { vlan = 101, trunk = "eth1" }'),
    "unknown-key": LAB + "colour = 1\n" + S + B1,
    "unknown-board-key": B1 + 'colour = "red"\n',
    "unknown-switch": B1.replace('"poe1"', '"poe9"'),
    "port-zero": B1.replace("port = 5", "port = 0"),
    "port-huge": B1.replace("port = 5", "port = 9223372036854775807"),
    "port-neg": B1.replace("port = 5", "port = -1, group = -9223372036854775808"),
    "vlan-range": B1.replace("vlan = 101", "vlan = 5000"),
    "bad-ifname": B2.replace("enp3s0", "../../etc/passwd"),
    "bad-name": B1.replace("rockpro64-1", "../../etc/passwd"),
    "bad-class": B1.replace('"rockpro64"', '"$(id)"'),
    "console-both": B1.replace('match = { ID_SERIAL_SHORT = "A10K1234" }', 'match = { A = "b" }, path = "/dev/x"'),
    "console-relative": B2.replace("/dev/ttyUSB0", "ttyUSB0"),
    "baud-zero": B2.replace("115200", "0"),
    "lease-order": LAB.replace('max = "1d"', 'max = "1h"') + S + B1,
    "bad-duration": LAB.replace('"1s"', '"1 sec"'),
    "zero-duration": LAB.replace('cycle_delay = "2s"', 'cycle_delay = "0s"'),
    "huge-duration": LAB.replace('"4h"', '"18446744073709551615d"'),
    "bad-mode": LAB.replace('"0660"', '"rwx"'),
    "bad-jail": LAB.replace('"none"', '"chroot"'),
    "bad-admin": LAB.replace('["ops"]', '["a b", "", "x:y"]'),
    "bad-version": LAB.replace('"2c"', '"3"'),
    "bad-retries": LAB.replace("retries = 1", "retries = 4294967295"),
    "bad-host": LAB.replace('"192.0.2.10:161"', '":99999"'),
    "ipv6-host": LAB.replace('"192.0.2.10:161"', '"[2001:db8::1]"'),
    "bad-switch-name": LAB.replace("[switches.poe1]", '[switches."a b/../c"]'),
    "log-small": LAB.replace("4194304", "-1").replace("log_keep = 2", "log_keep = 101"),
    "relative-paths": LAB.replace('"/run/boardlab/labd.sock"', '"labd.sock"'),
    "syntax": "[daemon\n",
    "syntax-board": 'name = "x\nclass = ',
    "wrong-types": 'name = 5\nclass = []\npower = "poe1"\n',
    "empty": "",
    "only-sep": S + S,
    "multibyte": LAB.replace('"ops"', '"\u00fc\u202e"') + S + B1.replace("A10K1234", "\u2603" * 10),
}
for k, v in cfgs.items():
    write("config", k, v)
write("config", "invalid-utf8", B1.encode() + b"\xff\xfe = 1\n")
