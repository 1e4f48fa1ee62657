//! Address types shared by the configuration and the jails.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An IPv4 network `a.b.c.d/len`, kept normalised (host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    /// A network; host bits of `addr` are cleared.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Ipv4Net> {
        (prefix <= 32).then(|| Ipv4Net { addr: Ipv4Addr::from(u32::from(addr) & Self::mask_bits(prefix)), prefix })
    }
    fn mask_bits(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }
    pub fn network(&self) -> Ipv4Addr {
        self.addr
    }
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(Self::mask_bits(self.prefix))
    }
    /// Number of addresses (saturating at u32::MAX for /0).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }
    /// The `n`-th address of the network, if inside it.
    pub fn nth(&self, n: u64) -> Option<Ipv4Addr> {
        if n >= self.size() {
            return None;
        }
        let n = u32::try_from(n).ok()?;
        Some(Ipv4Addr::from(u32::from(self.addr).checked_add(n)?))
    }
    /// The `index`-th subnet of length `prefix` inside this network.
    pub fn subnet(&self, prefix: u8, index: u32) -> Option<Ipv4Net> {
        if prefix < self.prefix || prefix > 32 {
            return None;
        }
        let count = 1u64 << (prefix - self.prefix);
        if u64::from(index) >= count {
            return None;
        }
        let step = 1u64 << (32 - u32::from(prefix));
        let start = self.nth(u64::from(index) * step)?;
        Ipv4Net::new(start, prefix)
    }
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & Self::mask_bits(self.prefix) == u32::from(self.addr)
    }
    /// Whether the two networks share any address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) =
            s.split_once('/').ok_or_else(|| format!("{s:?} is not an IPv4 network such as \"10.240.0.0/16\""))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| format!("{a:?} is not an IPv4 address"))?;
        let prefix: u8 =
            p.parse().ok().filter(|&p| p <= 32).ok_or_else(|| format!("{p:?} is not a prefix length (0-32)"))?;
        let net = Ipv4Net::new(addr, prefix).ok_or_else(|| format!("{s:?} is not an IPv4 network"))?;
        if net.addr != addr {
            return Err(format!("{s:?} has host bits set (did you mean \"{net}\"?)"));
        }
        Ok(net)
    }
}

impl TryFrom<String> for Ipv4Net {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Ipv4Net> for String {
    fn from(n: Ipv4Net) -> String {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nets_parse_and_allocate() {
        let p: Ipv4Net = "10.240.0.0/16".parse().unwrap();
        assert_eq!(p.subnet(30, 1).unwrap().to_string(), "10.240.0.4/30");
        assert_eq!(p.subnet(30, 16383).unwrap().to_string(), "10.240.255.252/30");
        assert!(p.subnet(30, 16384).is_none());
        assert!("10.240.0.1/16".parse::<Ipv4Net>().unwrap_err().contains("10.240.0.0/16"));
        assert!("10.240.0.0/33".parse::<Ipv4Net>().is_err());
        let b: Ipv4Net = "172.30.0.0/16".parse().unwrap();
        assert!(b.overlaps(&"172.30.5.0/24".parse().unwrap()));
        assert!(!b.overlaps(&p));
    }
}
