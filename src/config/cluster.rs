//! `[cluster]`: this labd's place in a lab of several hosts, whose claims
//! are kept in etcd. Without the table labd keeps its claims in its own
//! SQLite database, alone.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Ctx;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub(super) host: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) etcd: Vec<Spanned<String>>,
    pub(super) prefix: Option<Spanned<String>>,
    pub(super) host_ttl: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) peer_listen: Option<Spanned<String>>,
    pub(super) peer_ca: Option<Spanned<String>>,
    pub(super) peer_cert: Option<Spanned<String>>,
    pub(super) peer_key: Option<Spanned<String>>,
}

/// The labd-to-labd channel: TLS with a certificate on both sides, each
/// signed by the lab's own CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTls {
    /// Where this labd takes other hosts' requests; other hosts are told
    /// this address (so not 0.0.0.0).
    pub listen: std::net::SocketAddr,
    /// The lab's CA certificate (PEM): a peer's certificate must be signed
    /// by it.
    pub ca: PathBuf,
    /// This host's certificate (PEM), for the name `host`.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

/// The validated `[cluster]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// This labd's name in the lab, unique among its hosts.
    pub host: String,
    /// etcd's client URLs (`http://HOST:PORT`).
    pub etcd: Vec<String>,
    /// The key prefix of this lab in etcd (`/boardlab`): no trailing '/'.
    pub prefix: String,
    /// How long this host's etcd lease outlives its last keep-alive: a
    /// host gone for longer is shown offline everywhere.
    pub host_ttl: Duration,
    /// How long a claim, release or renew waits for etcd before it fails
    /// with `unavailable`.
    pub timeout: Duration,
    /// The channel other hosts' front doors forward requests through.
    pub peer: PeerTls,
}

impl Cluster {
    /// etcd's members as `HOST:PORT`, to keep jails away from them.
    pub fn etcd_hostports(&self) -> impl Iterator<Item = &str> {
        self.etcd.iter().filter_map(|u| u.strip_prefix("http://"))
    }
}

/// At most `n` characters of what the operator wrote, for a message.
fn short(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// `HOST:PORT` after `http://`: a name or address, and a port.
fn valid_endpoint(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else { return false };
    let Some((host, port)) = rest.rsplit_once(':') else { return false };
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    host_ok && port.parse::<u16>().is_ok_and(|p| p > 0)
}

/// Validates `[cluster]`, when there is one.
pub(super) fn validate(ctx: &mut Ctx<'_>, raw: Option<Spanned<RawCluster>>) -> Option<Cluster> {
    let raw = raw?;
    let whole = raw.span();
    let raw = raw.into_inner();
    let mut ok = true;
    let host = match &raw.host {
        None => {
            ctx.err(&whole, "cluster.host is required: this labd's name in the lab, e.g. host = \"lab2\"");
            ok = false;
            String::new()
        }
        Some(h) if !crate::ids::valid_name(h.get_ref()) => {
            ctx.err(
                &h.span(),
                format!(
                    "cluster.host {:?} is not a name (letters, digits, '-', '_', '.'; at most 64)",
                    short(h.get_ref(), 40)
                ),
            );
            ok = false;
            String::new()
        }
        Some(h) => h.get_ref().clone(),
    };
    if raw.etcd.is_empty() {
        ctx.err(&whole, "cluster.etcd is required: etcd's client URLs, e.g. etcd = [\"http://10.0.0.1:2379\"]");
        ok = false;
    }
    let mut etcd = Vec::new();
    for u in &raw.etcd {
        if valid_endpoint(u.get_ref()) {
            etcd.push(u.get_ref().clone());
        } else {
            ctx.err(
                &u.span(),
                format!(
                    "cluster.etcd {:?} is not an etcd client URL such as \"http://10.0.0.1:2379\"",
                    short(u.get_ref(), 60)
                ),
            );
            ok = false;
        }
    }
    let prefix = match &raw.prefix {
        None => "/boardlab".to_string(),
        Some(p) => {
            let v = p.get_ref();
            let good = v.starts_with('/')
                && !v.ends_with('/')
                && v.len() <= 128
                && v[1..].split('/').all(crate::ids::valid_name);
            if !good {
                ctx.err(
                    &p.span(),
                    format!(
                        "cluster.prefix {:?} must be a key path such as \"/boardlab\" (names after '/', no trailing '/')",
                        short(v, 40)
                    ),
                );
                ok = false;
            }
            v.clone()
        }
    };
    let host_ttl = ctx.duration(&raw.host_ttl, "cluster.host_ttl", Duration::from_secs(5));
    if !(Duration::from_secs(2)..=Duration::from_secs(60)).contains(&host_ttl) {
        let span = raw.host_ttl.as_ref().map(|s| s.span()).unwrap_or(0..0);
        ctx.err(&span, "cluster.host_ttl must be between 2s and 60s");
        ok = false;
    }
    let timeout = ctx.duration(&raw.timeout, "cluster.timeout", Duration::from_secs(3));
    if timeout > Duration::from_secs(30) {
        let span = raw.timeout.as_ref().map(|s| s.span()).unwrap_or(0..0);
        ctx.err(&span, "cluster.timeout must be at most 30s");
        ok = false;
    }
    let listen = match &raw.peer_listen {
        None => {
            ctx.err(
                &whole,
                "cluster.peer_listen is required: where other hosts reach this one, e.g. \"10.0.0.2:7420\"",
            );
            None
        }
        Some(v) => match v.get_ref().parse::<std::net::SocketAddr>() {
            Ok(a) if !a.ip().is_unspecified() && a.port() != 0 => Some(a),
            _ => {
                ctx.err(
                    &v.span(),
                    format!(
                        "cluster.peer_listen {:?} must be an address and port other hosts reach, such as \"10.0.0.2:7420\"",
                        short(v.get_ref(), 60)
                    ),
                );
                None
            }
        },
    };
    let mut path = |v: &Option<Spanned<String>>, key: &str, what: &str| match v {
        None => {
            ctx.err(&whole, format!("cluster.{key} is required: {what}"));
            None
        }
        Some(p) if !p.get_ref().starts_with('/') => {
            ctx.err(&p.span(), format!("cluster.{key} {:?} must be an absolute path", short(p.get_ref(), 60)));
            None
        }
        Some(p) => Some(PathBuf::from(p.get_ref())),
    };
    let ca = path(&raw.peer_ca, "peer_ca", "the lab's CA certificate (PEM) that signs every host's");
    let cert = path(&raw.peer_cert, "peer_cert", "this host's certificate (PEM), for its cluster.host name");
    let key = path(&raw.peer_key, "peer_key", "this host's private key (PEM)");
    let peer = match (listen, ca, cert, key) {
        (Some(listen), Some(ca), Some(cert), Some(key)) => PeerTls { listen, ca, cert, key },
        _ => return None,
    };
    ok.then_some(Cluster { host, etcd, prefix, host_ttl, timeout, peer })
}
