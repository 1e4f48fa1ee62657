//! The attacks' packets: a small Python tool run as root of a network
//! namespace (the jail's over ssh, or the board's) makes and sends them,
//! and sniffers in the would-be victims' namespaces look for the marker
//! only the attack's packets carry.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Output, Stdio};

use super::common::jails::Login;

/// Makes and sends packets, or sniffs for a marker. Run as root of a
/// network namespace (the jail's, or the board's).
pub const PKT: &str = r#"
import socket, struct, sys, time

def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

def a6(x):
    return socket.inet_pton(socket.AF_INET6, x)

def n6(x):
    return int.from_bytes(a6(x), 'big')

def s6(n):
    return socket.inet_ntop(socket.AF_INET6, n.to_bytes(16, 'big'))

def with_sum(src, dst, nh, seg, at):
    ph = a6(src) + a6(dst) + struct.pack('!I3xB', len(seg), nh)
    c = csum(ph + seg)
    return seg[:at] + struct.pack('!H', c) + seg[at + 2:]

def hdr6(src, dst, nh, plen, hlim):
    return struct.pack('!IHBB', 6 << 28, plen, nh, hlim) + a6(src) + a6(dst)

def send6(p, dst, ifn):
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
    scope = socket.if_nametoindex(ifn) if ifn != '-' else 0
    try:
        s.sendto(p, (dst, 0, 0, scope))
    except OSError as e:
        print('send', dst, e, file=sys.stderr)
    s.close()

def send4(p, dst):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        s.sendto(p, (dst, 0))
    except OSError as e:
        print('send', dst, e, file=sys.stderr)
    s.close()

def hdr4(src, dst, proto, plen, ttl):
    return struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + plen, 0, 0, ttl, proto, 0,
                       socket.inet_aton(src), socket.inet_aton(dst))

def udp6(src, dst, sport, dport, data):
    seg = struct.pack('!HHHH', sport, dport, 8 + len(data), 0) + data
    return with_sum(src, dst, 17, seg, 6)

def icmp6(src, dst, typ, code, body):
    return with_sum(src, dst, 58, struct.pack('!BBH', typ, code, 0) + body, 2)

def mac(ifn):
    return bytes.fromhex(open('/sys/class/net/%s/address' % ifn).read().strip().replace(':', ''))

def describe(f):
    et = struct.unpack('!H', f[12:14])[0]
    if et == 0x86dd:
        return 'ipv6 %s > %s nh %d' % (socket.inet_ntop(socket.AF_INET6, f[22:38]),
                                       socket.inet_ntop(socket.AF_INET6, f[38:54]), f[20])
    if et == 0x0800:
        return 'ipv4 %s > %s proto %d' % (socket.inet_ntoa(f[26:30]), socket.inet_ntoa(f[30:34]), f[23])
    return 'ethertype %04x' % et

cmd, a = sys.argv[1], sys.argv[2:]
if cmd == 'udp6':
    # SRC SPORT DST DPORT DATA HLIM IF [hbh|frag]
    src, sport, dst, dport, data, hlim, ifn = a[0], int(a[1]), a[2], int(a[3]), a[4].encode(), int(a[5]), a[6]
    how = a[7] if len(a) > 7 else ''
    seg = udp6(src, dst, sport, dport, data)
    if how == 'hbh':
        ext = bytes([17, 0, 1, 4, 0, 0, 0, 0])
        send6(hdr6(src, dst, 0, len(ext) + len(seg), hlim) + ext + seg, dst, ifn)
    elif how == 'frag':
        first, rest = seg[:16], seg[16:]
        f1 = struct.pack('!BBHI', 17, 0, 1, 0x4242) + first
        f2 = struct.pack('!BBHI', 17, 0, 2 << 3, 0x4242) + rest
        for f in (f1, f2):
            send6(hdr6(src, dst, 44, len(f), hlim) + f, dst, ifn)
    else:
        send6(hdr6(src, dst, 17, len(seg), hlim) + seg, dst, ifn)
elif cmd == 'udp4':
    # SRC SPORT DST DPORT DATA TTL
    src, sport, dst, dport, data, ttl = a[0], int(a[1]), a[2], int(a[3]), a[4].encode(), int(a[5])
    seg = struct.pack('!HHHH', sport, dport, 8 + len(data), 0) + data
    send4(hdr4(src, dst, 17, len(seg), ttl) + seg, dst)
elif cmd == 'echo6':
    # SRC DST DATA IF
    src, dst, data, ifn = a[0], a[1], a[2].encode(), a[3]
    p = icmp6(src, dst, 128, 0, struct.pack('!HH', 0x4242, 1) + data)
    send6(hdr6(src, dst, 58, len(p), 64) + p, dst, ifn)
elif cmd == 'echo4':
    # SRC DST DATA
    src, dst, data = a[0], a[1], a[2].encode()
    body = struct.pack('!BBHHH', 8, 0, 0, 0x4242, 1) + data
    body = body[:2] + struct.pack('!H', csum(body)) + body[4:]
    send4(hdr4(src, dst, 1, len(body), 64) + body, dst)
elif cmd == 'ns6':
    # FIRST_SRC COUNT TARGET DST IF: neighbour solicitations from COUNT sources
    base, n, target, dst, ifn = n6(a[0]), int(a[1]), a[2], a[3], a[4]
    for i in range(n):
        src = s6(base + i)
        p = icmp6(src, dst, 135, 0, struct.pack('!I', 0) + a6(target) + bytes([1, 1]) + mac(ifn))
        send6(hdr6(src, dst, 58, len(p), 255) + p, dst, ifn)
elif cmd == 'ra6':
    # SRC DST IF PREFIX ROUTE: a router advertisement (default route,
    # an autoconfiguration prefix, a route to ROUTE/64)
    src, dst, ifn, prefix, route = a[0], a[1], a[2], a[3], a[4]
    body = struct.pack('!BBHII', 64, 0, 1800, 0, 0) + bytes([1, 1]) + mac(ifn)
    body += struct.pack('!BBBBIII', 3, 4, 64, 0xc0, 86400, 14400, 0) + a6(prefix)
    body += struct.pack('!BBBBI', 24, 3, 64, 0x08, 86400) + a6(route)
    p = icmp6(src, dst, 134, 0, body)
    send6(hdr6(src, dst, 58, len(p), 255) + p, dst, ifn)
elif cmd == 'redirect6':
    # SRC DST IF TARGET DEST: "DEST is better reached through TARGET"
    src, dst, ifn, target, dest = a[0], a[1], a[2], a[3], a[4]
    body = struct.pack('!I', 0) + a6(target) + a6(dest) + bytes([2, 1]) + mac(ifn)
    p = icmp6(src, dst, 137, 0, body)
    send6(hdr6(src, dst, 58, len(p), 255) + p, dst, ifn)
elif cmd == 'sniff':
    # SECONDS MARKER: every frame that arrives here carrying MARKER
    secs, marker = float(a[0]), a[1].encode()
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.settimeout(0.2)
    print('READY', flush=True)
    end = time.time() + secs
    while time.time() < end:
        try:
            f, addr = s.recvfrom(65535)
        except socket.timeout:
            continue
        if addr[2] != 4 and marker in f:
            print('HIT', addr[0], describe(f), flush=True)
else:
    sys.exit('unknown command ' + cmd)
"#;

/// Runs [`PKT`] with `args` inside the jail, as its root, over ssh.
pub fn jail_pkt(l: &Login, args: &str) -> Output {
    let mut c = l.command(&format!("python3 - {args}"));
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(PKT.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "pkt {args} in the jail: {}", String::from_utf8_lossy(&o.stderr));
    o
}

/// Runs [`PKT`] with `args` in the network namespace `ns` (the board's).
pub fn ns_pkt(ns: &str, args: &[&str]) -> Output {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(PKT.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "pkt {args:?} in {ns}: {}", String::from_utf8_lossy(&o.stderr));
    o
}

/// Watches a network namespace for frames carrying a marker; killed on
/// drop.
pub struct Sniffer {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
    what: String,
}

impl Sniffer {
    pub fn start(ns: &str, secs: u32, marker: &str, what: &str) -> Sniffer {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-", "sniff", &secs.to_string(), marker])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(PKT.as_bytes()).unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        assert_eq!(first.trim(), "READY", "the sniffer in {ns} did not start");
        Sniffer { child, out, what: what.to_string() }
    }

    /// Waits for the sniffer's end; what it saw, prefixed with what it
    /// watched.
    pub fn hits(mut self) -> Vec<String> {
        let mut rest = String::new();
        let _ = self.out.read_to_string(&mut rest);
        let _ = self.child.wait();
        rest.lines().filter(|l| l.starts_with("HIT")).map(|l| format!("{}: {l}", self.what)).collect()
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A marker no other packet carries.
pub fn marker(tag: &str) -> String {
    let mut b = [0u8; 6];
    getrandom::getrandom(&mut b).unwrap();
    format!("bl{tag}{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}
