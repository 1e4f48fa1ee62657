//! A minimal TFTP client (RFC 1350): one RRQ in octet mode, lock-step DATA
//! and ACK, as boot ROMs do. The file is hashed as it arrives, not stored.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Lowercase hex of a digest.
fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

const RRQ: u16 = 1;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;
const BLOCK: usize = 512;
/// Retransmissions of the last packet before giving up.
const RETRIES: u32 = 5;
/// Wait for each answer before retransmitting.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A fetched file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub bytes: u64,
    pub sha256: String,
}

/// Why a fetch did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Power went off meanwhile.
    Cancelled,
    /// Anything else, as a reason for the serial line.
    Failed(String),
}

/// Builds a read request; `None` if the name cannot be sent.
pub fn rrq(file: &str) -> Option<Vec<u8>> {
    if file.is_empty() || file.len() > 255 || file.contains('\0') {
        return None;
    }
    let mut p = RRQ.to_be_bytes().to_vec();
    p.extend_from_slice(file.as_bytes());
    p.push(0);
    p.extend_from_slice(b"octet\0");
    Some(p)
}

fn ack(block: u16) -> [u8; 4] {
    let b = block.to_be_bytes();
    let a = ACK.to_be_bytes();
    [a[0], a[1], b[0], b[1]]
}

/// Fetches `file` from `server`:69.
pub fn fetch(server: IpAddr, file: &str, cancel: &AtomicBool) -> Result<Fetched, Failure> {
    fetch_at(SocketAddr::new(server, 69), file, cancel)
}

/// Fetches `file`, sending the request to `dest` (port 69 except in tests),
/// over IPv4 or IPv6.
pub fn fetch_at(dest: SocketAddr, file: &str, cancel: &AtomicBool) -> Result<Fetched, Failure> {
    let server = dest.ip();
    let fail = |m: String| Failure::Failed(m);
    let request = rrq(file).ok_or_else(|| fail(format!("bad file name {file:?}")))?;
    let any: SocketAddr = if dest.is_ipv6() { "[::]:0".parse() } else { "0.0.0.0:0".parse() }
        .map_err(|e| fail(format!("socket: {e}")))?;
    let sock = UdpSocket::bind(any).map_err(|e| fail(format!("socket: {e}")))?;
    sock.set_read_timeout(Some(Duration::from_millis(25))).map_err(|e| fail(format!("socket: {e}")))?;
    let first_dest = dest;
    // The server answers from a new port (its transfer id); we talk to that
    // one from the first DATA on and ignore packets from anywhere else.
    let mut peer: Option<SocketAddr> = None;
    let mut last: Vec<u8> = request;
    let mut expect: u16 = 1;
    let mut hash = Sha256::new();
    let mut bytes: u64 = 0;
    let mut buf = [0u8; 4 + BLOCK + 64];
    let mut tries = 0;
    let mut sent_at = Instant::now();
    sock.send_to(&last, peer.unwrap_or(first_dest)).map_err(|e| fail(format!("send: {e}")))?;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(Failure::Cancelled);
        }
        if sent_at.elapsed() >= RETRY_AFTER {
            tries += 1;
            if tries > RETRIES {
                return Err(fail(if peer.is_none() {
                    "no answer from server".into()
                } else {
                    format!("timeout at block {expect}")
                }));
            }
            sock.send_to(&last, peer.unwrap_or(first_dest)).map_err(|e| fail(format!("send: {e}")))?;
            sent_at = Instant::now();
        }
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => return Err(fail(format!("receive: {e}"))),
        };
        if n < 4 || from.ip() != server || peer.is_some_and(|p| p != from) {
            continue;
        }
        let op = u16::from_be_bytes([buf[0], buf[1]]);
        let num = u16::from_be_bytes([buf[2], buf[3]]);
        match op {
            ERROR => {
                let msg = &buf[4..n];
                let end = msg.iter().position(|&b| b == 0).unwrap_or(msg.len());
                return Err(fail(format!("server error {num}: {}", String::from_utf8_lossy(&msg[..end]))));
            }
            DATA if num == expect => {
                peer = Some(from);
                let data = &buf[4..n];
                hash.update(data);
                bytes += data.len() as u64;
                last = ack(num).to_vec();
                sock.send_to(&last, from).map_err(|e| fail(format!("send: {e}")))?;
                sent_at = Instant::now();
                tries = 0;
                if data.len() < BLOCK {
                    return Ok(Fetched { bytes, sha256: hex(&hash.finalize()) });
                }
                expect = expect.checked_add(1).ok_or_else(|| fail("file larger than 32 MiB".into()))?;
            }
            DATA if num == expect.wrapping_sub(1) && peer.is_some() => {
                // Our ACK was lost and the server repeated itself.
                sock.send_to(&last, from).map_err(|e| fail(format!("send: {e}")))?;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrq_shape() {
        assert_eq!(rrq("boot.scr").unwrap(), b"\x00\x01boot.scr\x00octet\x00".to_vec());
        assert!(rrq("").is_none());
        assert!(rrq("a\0b").is_none());
    }

    /// A tiny in-process TFTP server on 127.0.0.1 that sends 1000 bytes.
    #[test]
    fn fetch_from_a_local_server() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let expect = {
            let mut h = Sha256::new();
            h.update(&data);
            hex(&h.finalize())
        };
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 600];
            let (_, client) = server.recv_from(&mut buf).unwrap();
            let xfer = UdpSocket::bind("127.0.0.1:0").unwrap();
            for (i, chunk) in [&data[..512], &data[512..]].iter().enumerate() {
                let mut p = vec![0, 3, 0, (i + 1) as u8];
                p.extend_from_slice(chunk);
                xfer.send_to(&p, client).unwrap();
                let (n, _) = xfer.recv_from(&mut buf).unwrap();
                assert_eq!(&buf[..n], &[0, 4, 0, (i + 1) as u8]);
            }
        });
        let cancel = AtomicBool::new(false);
        let got = fetch_at(SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), port), "x", &cancel).unwrap();
        t.join().unwrap();
        assert_eq!(got, Fetched { bytes: 1000, sha256: expect });
    }
}
