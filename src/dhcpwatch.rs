//! Watching a board's link for its DHCP request: what `labd selftest`
//! checks the link with. A packet socket (AF_PACKET, the IPv4 packets of
//! one interface) sees what arrives on the link before any firewall of
//! the host, so a parked link (its packets dropped by the host table) can
//! be watched once it is up; nothing is ever sent on it.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// A DHCP (or plain BOOTP) request seen on the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpRequest {
    /// The client's hardware address (`chaddr`), as `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// `DHCPDISCOVER`, `DHCPREQUEST`, `DHCPINFORM`, or `BOOTREQUEST`
    /// (BOOTP, no DHCP message type).
    pub kind: &'static str,
}

/// A packet socket on one interface.
pub struct DhcpWatch {
    fd: OwnedFd,
}

impl DhcpWatch {
    /// Watches the interface `ifname` (it need not be up yet).
    pub fn open(ifname: &str) -> io::Result<DhcpWatch> {
        let name = CString::new(ifname).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))?;
        // SAFETY: `name` is a valid NUL-terminated string for the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("no interface {ifname}")));
        }
        let proto = (libc::ETH_P_IP as u16).to_be();
        // SAFETY: a plain system call with integer arguments.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, i32::from(proto)) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` was just returned by socket(2) and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is a plain C struct for which all zeroes is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = i32::try_from(ifindex).unwrap_or(0);
        let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `sll` is a valid sockaddr_ll that outlives the call, and
        // `len` is its size.
        let r = unsafe { libc::bind(fd.as_raw_fd(), (&sll as *const libc::sockaddr_ll).cast(), len) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(DhcpWatch { fd })
    }

    /// Another handle on the same socket (for a blocking thread).
    pub fn try_clone(&self) -> io::Result<DhcpWatch> {
        Ok(DhcpWatch { fd: self.fd.try_clone()? })
    }

    /// The first DHCP request that arrives before `until`; `None` if none did.
    pub fn wait(&self, until: Instant) -> io::Result<Option<DhcpRequest>> {
        let mut buf = vec![0u8; 2048];
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let ms = left.min(Duration::from_millis(200)).as_millis().max(1) as i32;
            let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: `pfd` is one valid pollfd for the length given.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                continue;
            }
            // SAFETY: `buf` is writable for its length; the socket is ours.
            let got =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if got < 0 {
                let e = io::Error::last_os_error();
                // ENETDOWN: the link went down (and maybe up) meanwhile.
                if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock)
                    || e.raw_os_error() == Some(libc::ENETDOWN)
                {
                    continue;
                }
                return Err(e);
            }
            let packet = buf.get(..usize::try_from(got).unwrap_or(0)).unwrap_or_default();
            if let Some(r) = parse_request(packet) {
                return Ok(Some(r));
            }
        }
    }
}

/// The DHCP request an IPv4 packet carries: UDP from port 68 to port 67,
/// a BOOTREQUEST on Ethernet. Anything else, or anything cut short, is not.
pub fn parse_request(ip: &[u8]) -> Option<DhcpRequest> {
    let first = *ip.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 || *ip.get(9)? != 17 {
        return None;
    }
    // A fragment past the first carries no UDP header.
    if u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]) & 0x1fff != 0 {
        return None;
    }
    let udp = ip.get(ihl..)?;
    let port = |at: usize| Some(u16::from_be_bytes([*udp.get(at)?, *udp.get(at + 1)?]));
    if port(0)? != 68 || port(2)? != 67 {
        return None;
    }
    let bootp = udp.get(8..)?;
    // op 1 (request), htype 1 (Ethernet), hlen 6.
    if bootp.get(..3)? != [1, 1, 6] {
        return None;
    }
    let mac = bootp.get(28..34)?.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    let mut kind = "BOOTREQUEST";
    if bootp.get(236..240) == Some(&[99, 130, 83, 99][..]) {
        let mut opts = bootp.get(240..).unwrap_or_default();
        while let Some((&code, rest)) = opts.split_first() {
            match code {
                0 => opts = rest,
                255 => break,
                _ => {
                    let len = usize::from(*rest.first()?);
                    let value = rest.get(1..1 + len)?;
                    if code == 53 {
                        kind = match value.first() {
                            Some(1) => "DHCPDISCOVER",
                            Some(3) => "DHCPREQUEST",
                            Some(8) => "DHCPINFORM",
                            _ => return None,
                        };
                        break;
                    }
                    opts = rest.get(1 + len..)?;
                }
            }
        }
    }
    Some(DhcpRequest { mac, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4/UDP packet from 0.0.0.0:68 to 255.255.255.255:67 with a
    /// BOOTP request from `mac` and `options` after the magic cookie.
    fn packet(mac: [u8; 6], options: &[u8], sport: u16) -> Vec<u8> {
        let mut bootp = vec![0u8; 236];
        bootp[..4].copy_from_slice(&[1, 1, 6, 0]);
        bootp[28..34].copy_from_slice(&mac);
        bootp.extend([99, 130, 83, 99]);
        bootp.extend_from_slice(options);
        let mut udp = Vec::new();
        udp.extend(sport.to_be_bytes());
        udp.extend(67u16.to_be_bytes());
        udp.extend(((8 + bootp.len()) as u16).to_be_bytes());
        udp.extend([0, 0]);
        udp.extend(bootp);
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255];
        ip[2..4].copy_from_slice(&((20 + udp.len()) as u16).to_be_bytes());
        ip.extend(udp);
        ip
    }

    const MAC: [u8; 6] = [0x06, 0xb1, 0, 0x12, 0, 1];

    #[test]
    fn finds_a_boards_dhcp_request_and_its_address() {
        let discover = packet(MAC, &[53, 1, 1, 255], 68);
        assert_eq!(
            parse_request(&discover),
            Some(DhcpRequest { mac: "06:b1:00:12:00:01".into(), kind: "DHCPDISCOVER" })
        );
        // Padding and other options before the message type.
        let request = packet(MAC, &[0, 0, 12, 3, b'r', b'p', b'1', 53, 1, 3, 255], 68);
        assert_eq!(parse_request(&request).unwrap().kind, "DHCPREQUEST");
        assert_eq!(parse_request(&packet(MAC, &[255], 68)).unwrap().kind, "BOOTREQUEST");
    }

    #[test]
    fn anything_else_is_not_a_request() {
        // Another port, a reply (op 2), a cut packet, a later fragment,
        // an option running past the end, an unknown message type.
        assert_eq!(parse_request(&packet(MAC, &[53, 1, 1], 5353)), None);
        assert_eq!(parse_request(&packet(MAC, &[53, 1, 2, 255], 68)), None);
        let mut reply = packet(MAC, &[53, 1, 1, 255], 68);
        reply[28] = 2;
        assert_eq!(parse_request(&reply), None);
        let whole = packet(MAC, &[53, 1, 1, 255], 68);
        for cut in [0, 1, 19, 27, 30, 50] {
            assert_eq!(parse_request(&whole[..cut]), None, "cut at {cut}");
        }
        let mut frag = whole.clone();
        frag[7] = 1;
        assert_eq!(parse_request(&frag), None);
        assert_eq!(parse_request(&packet(MAC, &[12, 40, b'x'], 68)), None);
        let mut v6 = whole;
        v6[0] = 0x60;
        assert_eq!(parse_request(&v6), None);
    }
}
