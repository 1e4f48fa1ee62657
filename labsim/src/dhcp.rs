//! A minimal DHCP client (RFC 2131), enough for a board's boot ROM:
//! DISCOVER, OFFER, REQUEST, ACK, on one interface that has no address yet.
//!
//! It uses an ordinary UDP socket bound to 0.0.0.0:68 with SO_BINDTODEVICE
//! and SO_BROADCAST: Linux sends a limited broadcast out of the bound device
//! with source 0.0.0.0 even when the device has no address. Replies only
//! reach us if the server broadcasts them, so every request sets the
//! BROADCAST flag (a unicast OFFER to the not-yet-configured address would be
//! dropped by the kernel). The board's namespace must not reverse-path-filter
//! the server's source address, which it cannot route yet: the board process
//! turns `rp_filter` off inside its namespace.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType};

use super::{Result, SimError};

const MAGIC: [u8; 4] = [99, 130, 83, 99];
const DISCOVER: u8 = 1;
const OFFER: u8 = 2;
const REQUEST: u8 = 3;
const ACK: u8 = 5;
const NAK: u8 = 6;
/// Options the board asks for: mask, router, DNS, server id, TFTP server
/// name, boot file name, lease time, root path (the NFS root).
const PARAMS: [u8; 8] = [1, 3, 6, 54, 66, 67, 51, 17];

/// What the board learned from a successful exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub addr: Ipv4Addr,
    /// Prefix length from the subnet mask option (24 if absent).
    pub prefix: u8,
    /// The DHCP server (option 54).
    pub server: Ipv4Addr,
    /// Where to fetch the boot file: `siaddr` (next server) if set, else the
    /// DHCP server itself.
    pub tftp_server: Ipv4Addr,
    /// Option 67, else the BOOTP `file` field.
    pub boot_file: Option<String>,
    /// Option 17, `[server:]path` of the NFS root.
    pub root_path: Option<String>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Lease(Lease),
    NoOffer,
    /// The server refused our REQUEST.
    Nak(Ipv4Addr),
    /// Power went off meanwhile.
    Cancelled,
}

/// A parsed server reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub xid: u32,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub chaddr: [u8; 6],
    pub file: Option<String>,
    pub options: BTreeMap<u8, Vec<u8>>,
}

impl Reply {
    /// DHCP message type (option 53).
    pub fn msg_type(&self) -> Option<u8> {
        self.options.get(&53).and_then(|v| v.first().copied())
    }

    fn ip_option(&self, code: u8) -> Option<Ipv4Addr> {
        self.options.get(&code).filter(|v| v.len() >= 4).map(|v| Ipv4Addr::new(v[0], v[1], v[2], v[3]))
    }

    /// Turns an ACK into a lease.
    pub fn lease(&self) -> Option<Lease> {
        let server = self.ip_option(54).unwrap_or(self.siaddr);
        let prefix = self
            .ip_option(1)
            .map(|m| u32::from(m).leading_ones())
            .and_then(|p| u8::try_from(p).ok())
            .filter(|p| (1..=32).contains(p))
            .unwrap_or(24);
        let boot_file = self
            .options
            .get(&67)
            .map(|v| String::from_utf8_lossy(v).trim_end_matches('\0').to_string())
            .filter(|s| !s.is_empty())
            .or_else(|| self.file.clone());
        let tftp_server = if self.siaddr.is_unspecified() { server } else { self.siaddr };
        let root_path = self
            .options
            .get(&17)
            .map(|v| String::from_utf8_lossy(v).trim_end_matches('\0').to_string())
            .filter(|s| !s.is_empty());
        (!self.yiaddr.is_unspecified()).then_some(Lease {
            addr: self.yiaddr,
            prefix,
            server,
            tftp_server,
            boot_file,
            root_path,
        })
    }
}

/// Builds a client message. `request` carries (requested address, server id)
/// for a REQUEST.
pub fn build(msg_type: u8, xid: u32, mac: [u8; 6], request: Option<(Ipv4Addr, Ipv4Addr)>) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 1; // BOOTREQUEST
    p[1] = 1; // Ethernet
    p[2] = 6;
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[10] = 0x80; // BROADCAST flag: we cannot receive unicast yet
    p[28..34].copy_from_slice(&mac);
    p.extend_from_slice(&MAGIC);
    p.extend_from_slice(&[53, 1, msg_type]);
    let mut client_id = vec![61, 7, 1];
    client_id.extend_from_slice(&mac);
    p.extend_from_slice(&client_id);
    if let Some((addr, server)) = request {
        p.extend_from_slice(&[50, 4]);
        p.extend_from_slice(&addr.octets());
        p.extend_from_slice(&[54, 4]);
        p.extend_from_slice(&server.octets());
    }
    p.extend_from_slice(&[55, u8::try_from(PARAMS.len()).unwrap_or(0)]);
    p.extend_from_slice(&PARAMS);
    p.push(255);
    // Some servers ignore messages shorter than a BOOTP packet (300 bytes).
    if p.len() < 300 {
        p.resize(300, 0);
    }
    p
}

/// Parses a server reply; `None` for anything that is not a BOOTREPLY with
/// the DHCP magic cookie.
pub fn parse(buf: &[u8]) -> Option<Reply> {
    if buf.len() < 240 || buf[0] != 2 || buf[236..240] != MAGIC {
        return None;
    }
    let ip = |o: usize| Ipv4Addr::new(buf[o], buf[o + 1], buf[o + 2], buf[o + 3]);
    let mut chaddr = [0u8; 6];
    chaddr.copy_from_slice(&buf[28..34]);
    let file_raw = &buf[108..236];
    let end = file_raw.iter().position(|&b| b == 0).unwrap_or(file_raw.len());
    let file = Some(String::from_utf8_lossy(&file_raw[..end]).into_owned()).filter(|s| !s.is_empty());
    let mut options = BTreeMap::new();
    let mut i = 240;
    while i < buf.len() {
        match buf[i] {
            0 => i += 1,
            255 => break,
            code => {
                let len = usize::from(*buf.get(i + 1)?);
                let val = buf.get(i + 2..i + 2 + len)?;
                options.entry(code).or_insert_with(Vec::new).extend_from_slice(val);
                i += 2 + len;
            }
        }
    }
    Some(Reply {
        xid: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        yiaddr: ip(16),
        siaddr: ip(20),
        chaddr,
        file,
        options,
    })
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// The client socket: 0.0.0.0:68 on `ifname` only, allowed to broadcast.
fn client_socket(ifname: &str) -> Result<UdpSocket> {
    let fd: OwnedFd = socket::socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| SimError::Sys { what: "creating DHCP socket".into(), source: e.into() })?;
    let sys = |what: &str| {
        let what = format!("{what} on DHCP socket ({ifname})");
        move |e: nix::Error| SimError::Sys { what, source: e.into() }
    };
    socket::setsockopt(&fd, sockopt::BindToDevice, &std::ffi::OsString::from(ifname))
        .map_err(sys("SO_BINDTODEVICE"))?;
    socket::setsockopt(&fd, sockopt::Broadcast, &true).map_err(sys("SO_BROADCAST"))?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(sys("SO_REUSEADDR"))?;
    bind_any(&fd, 68).map_err(sys("bind 0.0.0.0:68"))?;
    let sock = UdpSocket::from(fd);
    sock.set_read_timeout(Some(Duration::from_millis(25))).map_err(SimError::sys("setting DHCP socket timeout"))?;
    Ok(sock)
}

/// Binds an IPv4 socket to 0.0.0.0:`port` (nix's socket address types sit
/// behind a feature this crate does not enable, so this goes through libc).
fn bind_any(fd: &OwnedFd, port: u16) -> nix::Result<()> {
    let addr = libc::sockaddr_in {
        sin_family: libc::sa_family_t::try_from(libc::AF_INET).map_err(|_| nix::Error::EINVAL)?,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(Ipv4Addr::UNSPECIFIED).to_be() },
        sin_zero: [0; 8],
    };
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_in>()).map_err(|_| nix::Error::EINVAL)?;
    // SAFETY: `fd` is an open socket we own; `addr` is a fully initialised
    // sockaddr_in that lives across the call, and `len` is its exact size.
    let rc = unsafe { libc::bind(fd.as_raw_fd(), std::ptr::addr_of!(addr).cast::<libc::sockaddr>(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(nix::Error::last())
    }
}

/// Sends `msg` every second until a reply of type `want` (or NAK) for `xid`
/// arrives, `wait` passes, or `cancel` is set.
fn exchange(
    sock: &UdpSocket,
    msg: &[u8],
    xid: u32,
    mac: [u8; 6],
    want: u8,
    wait: Duration,
    cancel: &AtomicBool,
) -> Result<Option<Reply>> {
    let dest = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    let start = Instant::now();
    let mut last_send: Option<Instant> = None;
    let mut buf = [0u8; 1500];
    while start.elapsed() < wait {
        if cancel.load(Ordering::Relaxed) {
            return Ok(None);
        }
        if last_send.map(|t| t.elapsed() >= Duration::from_secs(1)).unwrap_or(true) {
            sock.send_to(msg, dest).map_err(SimError::sys("sending DHCP message to 255.255.255.255:67"))?;
            last_send = Some(Instant::now());
        }
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                if let Some(r) = parse(&buf[..n]) {
                    if r.xid == xid && r.chaddr == mac && (r.msg_type() == Some(want) || r.msg_type() == Some(NAK)) {
                        return Ok(Some(r));
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(SimError::sys("receiving DHCP reply")(e)),
        }
    }
    Ok(None)
}

/// Runs DISCOVER/OFFER/REQUEST/ACK on `ifname`, waiting up to `wait` for
/// each reply. Does not configure the address; the caller does.
pub fn acquire(ifname: &str, mac: [u8; 6], wait: Duration, cancel: &AtomicBool) -> Result<Outcome> {
    let sock = client_socket(ifname)?;
    let mut xid_bytes = [0u8; 4];
    getrandom::getrandom(&mut xid_bytes).map_err(|e| SimError::Refused(format!("no randomness for DHCP xid: {e}")))?;
    let xid = u32::from_be_bytes(xid_bytes);
    let offer = match exchange(&sock, &build(DISCOVER, xid, mac, None), xid, mac, OFFER, wait, cancel)? {
        None if cancel.load(Ordering::Relaxed) => return Ok(Outcome::Cancelled),
        None => return Ok(Outcome::NoOffer),
        Some(r) if r.msg_type() == Some(NAK) => return Ok(Outcome::NoOffer),
        Some(r) => r,
    };
    let server = offer.ip_option(54).unwrap_or(offer.siaddr);
    let req = build(REQUEST, xid, mac, Some((offer.yiaddr, server)));
    match exchange(&sock, &req, xid, mac, ACK, wait, cancel)? {
        None if cancel.load(Ordering::Relaxed) => Ok(Outcome::Cancelled),
        None => Ok(Outcome::NoOffer),
        Some(r) if r.msg_type() == Some(NAK) => Ok(Outcome::Nak(server)),
        Some(r) => Ok(r.lease().map(Outcome::Lease).unwrap_or(Outcome::NoOffer)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_parse_round_trip() {
        let mac = [2, 0xb1, 0, 1, 0, 1];
        let mut p = build(REQUEST, 0x1234_5678, mac, Some((Ipv4Addr::new(10, 0, 0, 50), Ipv4Addr::new(10, 0, 0, 1))));
        assert_eq!(p.len(), 300);
        // Pretend a server turned it into an ACK with a boot file.
        p[0] = 2;
        p[16..20].copy_from_slice(&[10, 0, 0, 50]);
        p[20..24].copy_from_slice(&[10, 0, 0, 1]);
        p[108..116].copy_from_slice(b"boot.scr");
        let opts_at = 240;
        p[opts_at + 2] = ACK;
        let r = parse(&p).unwrap();
        assert_eq!(r.xid, 0x1234_5678);
        assert_eq!(r.chaddr, mac);
        assert_eq!(r.msg_type(), Some(ACK));
        let l = r.lease().unwrap();
        assert_eq!(l.addr, Ipv4Addr::new(10, 0, 0, 50));
        assert_eq!(l.server, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(l.tftp_server, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(l.boot_file.as_deref(), Some("boot.scr"));
        assert_eq!(l.prefix, 24);
        assert_eq!(l.root_path, None);
    }

    #[test]
    fn garbage_is_not_a_reply() {
        assert!(parse(&[]).is_none());
        assert!(parse(&[2u8; 239]).is_none());
        let mut p = build(DISCOVER, 1, [0; 6], None);
        p[0] = 2;
        let n = p.len();
        p[n - 1] = 7; // truncated option
        p[240 + 3] = 61;
        p[240 + 4] = 200;
        assert!(parse(&p).is_none());
    }

    #[test]
    fn macs_parse() {
        assert_eq!(parse_mac("02:b1:ab:12:00:01"), Some([2, 0xb1, 0xab, 0x12, 0, 1]));
        assert_eq!(parse_mac("02:b1:ab:12:00"), None);
        assert_eq!(parse_mac("02:b1:ab:12:00:01:02"), None);
        assert_eq!(parse_mac("zz:b1:ab:12:00:01"), None);
    }
}
