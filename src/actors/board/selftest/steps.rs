//! The selftest's checks after power-on (detection, console, DHCP) and the
//! link's set-up for the test and its parking after.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Network;
use crate::console::{Console, ConsoleState, Session};
use crate::dhcpwatch::DhcpWatch;
use crate::link::{self, LinkId};
use crate::power::{Detection, PowerError, SwitchClient};
use crate::protocol::Verdict;

/// The longest the port's detection is waited for: a PoE switch
/// classifies a powered device within a second or two.
pub const DETECTION_WAIT: Duration = Duration::from_secs(10);
/// How often the detection is read meanwhile.
const DETECTION_EVERY: Duration = Duration::from_millis(250);
/// Console output kept to match the pattern against (the latest).
const KEEP: usize = 64 * 1024;

/// A check's verdict, what it saw, and when (None: at its end).
pub type Seen = (Verdict, String, Option<Instant>);

/// The link, up for the test.
pub struct LinkUp {
    pub ifname: String,
    /// A VLAN link made for the test (removed after it).
    made: bool,
    watch: DhcpWatch,
}

/// The name of the VLAN link a test makes on the trunk.
fn test_vlan_name(vlan: u16) -> String {
    format!("blst{vlan}")
}

/// Gets the board's link ready to watch: there, IPv6 off, up, no address.
/// A VLAN board's link is made on its trunk for the test, and put in the
/// host table's set of parked links (what the host drops) meanwhile.
pub async fn link_up(network: Network) -> Result<LinkUp, String> {
    let r = tokio::task::spawn_blocking(move || -> Result<LinkUp, String> {
        let (ifname, made) = match &network {
            Network::Interface(name) => match link::host_link(name).map_err(|e| e.to_string())? {
                Some(_) => (name.clone(), false),
                None => return Err(format!("the board's link {name} is missing")),
            },
            Network::Vlan { vlan, trunk } => {
                let name = test_vlan_name(*vlan);
                let args = crate::jail::net::vlan_create_args(trunk, &name, *vlan);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                link::run("ip", &args, None).map_err(|e| format!("cannot make VLAN {vlan} on {trunk}: {e}"))?;
                // Dropped by the host like a parked link while it exists:
                // the test only listens on it.
                if let Err(e) = link::install_table(std::slice::from_ref(&name)) {
                    let _ = unmake_or_park(&name, true);
                    return Err(format!("cannot filter the test's link {name}: {e}"));
                }
                (name, true)
            }
        };
        // Watched once up: a packet socket bound to a link that is down
        // only reports that. The board is off until the power step.
        let up = || -> Result<DhcpWatch, String> {
            link::ipv6_off(&ifname).map_err(|e| e.to_string())?;
            link::run("ip", &["link", "set", "dev", &ifname, "up"], None).map_err(|e| e.to_string())?;
            DhcpWatch::open(&ifname).map_err(|e| format!("cannot watch {ifname}: {e}"))
        };
        match up() {
            Ok(watch) => Ok(LinkUp { ifname, made, watch }),
            Err(e) => {
                let _ = unmake_or_park(&ifname, made);
                Err(e)
            }
        }
    })
    .await;
    r.unwrap_or_else(|e| Err(format!("setting up the link failed: {e}")))
}

fn unmake_or_park(ifname: &str, made: bool) -> Result<(), String> {
    if made {
        let args = crate::jail::net::vlan_delete_args(None, ifname);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let deleted = link::run("ip", &args, None).map(|_| ()).map_err(|e| e.to_string());
        let _ = link::remove_from_table(&[ifname.to_string()]);
        deleted
    } else {
        link::park(ifname).map_err(|e| e.to_string())
    }
}

/// The link as it was: a test's VLAN link removed, the board's parked and
/// checked again (what the board actor records).
pub async fn link_back(up: Option<LinkUp>, network: Network, id: Option<LinkId>) -> Result<Option<LinkId>, String> {
    let r = tokio::task::spawn_blocking(move || {
        if let Some(up) = up {
            drop(up.watch);
            if up.made {
                unmake_or_park(&up.ifname, true).map_err(|e| format!("cannot remove the test's link: {e}"))?;
            }
        }
        super::super::link::check_blocking(&network, id.as_ref())
    })
    .await;
    r.unwrap_or_else(|e| Err(format!("parking the link failed: {e}")))
}

/// Attaches to the console (before power-on), unless its adapter is missing.
pub fn console_session(c: &Console) -> Result<Session, String> {
    let st = c.status();
    if st.state != ConsoleState::Attached {
        let why = st.message.unwrap_or_else(|| st.state.as_str().to_string());
        return Err(format!("the console is not attached: {why}"));
    }
    Ok(c.attach(false))
}

/// The first output after power-on, or the pattern, before `until`.
pub async fn console_output(session: Option<Result<Session, String>>, pattern: Option<&str>, until: Instant) -> Seen {
    let mut session = match session {
        None => return (Verdict::Skip, "the board file names no console".into(), Some(Instant::now())),
        Some(Err(e)) => return (Verdict::Fail, e, None),
        Some(Ok(s)) => s,
    };
    // Checked when the configuration loaded.
    let re = pattern.and_then(|p| regex::bytes::Regex::new(p).ok());
    let mut seen: Vec<u8> = Vec::new();
    let mut total = 0usize;
    let deadline = tokio::time::Instant::from_std(until);
    loop {
        let chunk = match tokio::time::timeout_at(deadline, session.output.recv()).await {
            Ok(Some(c)) => c,
            Ok(None) => return (Verdict::Fail, "the console stopped".into(), None),
            Err(_) => break,
        };
        // labd's own notes in the stream are not the board's.
        if chunk.starts_with(b"\r\n[boardlab: ") {
            continue;
        }
        total += chunk.len();
        seen.extend_from_slice(&chunk);
        if seen.len() > KEEP {
            seen.drain(..seen.len() - KEEP);
        }
        match (&re, pattern) {
            (None, _) => return (Verdict::Pass, format!("output: {}", shown(&seen, true)), Some(Instant::now())),
            (Some(re), Some(p)) if re.is_match(&seen) => {
                return (Verdict::Pass, format!("{p:?} seen"), Some(Instant::now()));
            }
            _ => {}
        }
    }
    match pattern {
        None => (Verdict::Fail, "not a byte after power-on (wiring, TX/RX swapped, baud rate?)".into(), None),
        Some(p) if total == 0 => (Verdict::Fail, format!("not a byte after power-on, waiting for {p:?}"), None),
        Some(p) => (Verdict::Fail, format!("{p:?} not seen in {total} bytes; the last: {}", shown(&seen, false)), None),
    }
}

/// The first (or last) bytes of `b`, printable, quoted.
fn shown(b: &[u8], first: bool) -> String {
    let part = if first { &b[..b.len().min(48)] } else { &b[b.len().saturating_sub(48)..] };
    let text: String = String::from_utf8_lossy(part)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    format!("{text:?}")
}

/// Reads the port's power detection until it delivers, or `until`.
pub async fn detection(port: &Arc<tokio::sync::Mutex<SwitchClient>>, group: u32, portno: u32, until: Instant) -> Seen {
    let mut last: Option<Detection> = None;
    loop {
        let r = port.lock().await.detection(group, portno).await;
        match r {
            Ok(Detection::Delivering) => return (Verdict::Pass, "delivering".into(), Some(Instant::now())),
            Ok(d) => last = Some(d),
            // A switch without the column says so; it cannot tell.
            Err(e @ (PowerError::BadValue { .. } | PowerError::Agent { .. })) if last.is_none() => {
                return (Verdict::Skip, format!("the switch does not report power detection ({e})"), None);
            }
            Err(e) => return (Verdict::Fail, e.to_string(), None),
        }
        if Instant::now() + DETECTION_EVERY >= until {
            break;
        }
        tokio::time::sleep(DETECTION_EVERY).await;
    }
    let d = last.map(Detection::as_str).unwrap_or("unknown");
    let why = match last {
        Some(Detection::Searching) => {
            ": the port is on and no power reaches the board (no board, a dead splitter, or a board that draws nothing)"
        }
        Some(Detection::Disabled) => ": the port reads on but the switch does not power it",
        _ => "",
    };
    (Verdict::Fail, format!("{d}{why}"), None)
}

/// The board's DHCP request on its link, before `until`.
pub async fn dhcp_request(link: Option<&Result<LinkUp, String>>, until: Instant, asked: bool) -> Seen {
    let up = match link {
        None if !asked => return (Verdict::Skip, "not part of the check".into(), Some(Instant::now())),
        None => return (Verdict::Skip, "the board file names no network".into(), Some(Instant::now())),
        Some(Err(_)) => return (Verdict::Fail, "not run: the link is not usable".into(), Some(Instant::now())),
        Some(Ok(up)) => up,
    };
    let fd = match up.watch.try_clone() {
        Ok(fd) => fd,
        Err(e) => return (Verdict::Fail, format!("cannot watch {}: {e}", up.ifname), None),
    };
    let ifname = up.ifname.clone();
    let r = tokio::task::spawn_blocking(move || fd.wait(until).map(|r| (r, Instant::now()))).await;
    match r {
        Ok(Ok((Some(req), at))) => (Verdict::Pass, format!("{} from {} on {ifname}", req.kind, req.mac), Some(at)),
        Ok(Ok((None, _))) => (Verdict::Fail, format!("no DHCP request on {ifname} after power-on"), None),
        Ok(Err(e)) => (Verdict::Fail, format!("watching {ifname}: {e}"), None),
        Err(e) => (Verdict::Fail, format!("watching {ifname}: {e}"), None),
    }
}
