//! Power requests to one switch are bounded in flight (`max_in_flight`):
//! cheap switches drop SETs that arrive while they are busy. labd talks to
//! labsim's switch (net-snmp's snmpd) through a UDP relay that plays a
//! slow switch (each answer held back) and counts the requests the switch
//! has not answered yet; every board of the lab is switched at once.

mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Lab;

/// How long the slow switch holds each answer back.
const SLOW: Duration = Duration::from_millis(150);

/// A UDP relay in front of snmpd: requests in flight (sent on, not yet
/// answered back), their maximum, and how many there were.
struct SlowSwitch {
    port: u16,
    max: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl SlowSwitch {
    fn start(snmpd: u16) -> SlowSwitch {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        front.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let port = front.local_addr().unwrap().port();
        let (now, max, total) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::default());
        let stop = Arc::new(AtomicBool::new(false));
        let s = SlowSwitch { port, max: max.clone(), total: Arc::clone(&total), stop: stop.clone() };
        std::thread::spawn(move || {
            // One upstream socket per client socket (labd opens one per operation).
            let uplinks: Mutex<HashMap<SocketAddr, UdpSocket>> = Mutex::default();
            let mut buf = [0u8; 65536];
            while !stop.load(Ordering::SeqCst) {
                let Ok((n, client)) = front.recv_from(&mut buf) else { continue };
                let mut ups = uplinks.lock().unwrap();
                let up = ups.entry(client).or_insert_with(|| {
                    let up = UdpSocket::bind("127.0.0.1:0").unwrap();
                    up.connect(("127.0.0.1", snmpd)).unwrap();
                    let (up2, front2, now2, stop2) =
                        (up.try_clone().unwrap(), front.try_clone().unwrap(), now.clone(), stop.clone());
                    up2.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
                    std::thread::spawn(move || {
                        let mut b = [0u8; 65536];
                        while !stop2.load(Ordering::SeqCst) {
                            let Ok(k) = up2.recv(&mut b) else { continue };
                            std::thread::sleep(SLOW);
                            now2.fetch_sub(1, Ordering::SeqCst);
                            let _ = front2.send_to(&b[..k], client);
                        }
                    });
                    up
                });
                let in_flight = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(in_flight, Ordering::SeqCst);
                total.fetch_add(1, Ordering::SeqCst);
                let _ = up.send(&buf[..n]);
            }
        });
        s
    }
}

impl Drop for SlowSwitch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Six boards left on behind labd's back; labd switches every one off at
/// start, all at once, through the slow switch. Returns the most requests
/// the switch had in flight, and how many it got.
fn six_boards_off_at_once(max_in_flight: Option<u32>) -> (usize, usize) {
    const N: usize = 6;
    let lab = Lab::create(N, "rockpro64", &["--no-net", "--no-console"], |t| t);
    let slow = SlowSwitch::start(lab.snmp_port());
    let toml = std::fs::read_to_string(lab.path().join("lab.toml")).unwrap();
    let mut toml = toml.replace(&format!("127.0.0.1:{}", lab.snmp_port()), &format!("127.0.0.1:{}", slow.port));
    // Room for a request that waits its turn behind the others.
    toml = toml.replace("timeout = \"500ms\"", "timeout = \"2s\"");
    if let Some(m) = max_in_flight {
        toml = toml.replace("[switches.poe1]\n", &format!("[switches.poe1]\nmax_in_flight = {m}\n"));
    }
    std::fs::write(lab.path().join("lab.toml"), toml).unwrap();
    for b in 1..=N as u32 {
        lab.snmpset(b, 1);
    }
    let mut lab = lab;
    lab.start_labd();
    let names: Vec<String> = (1..=N).map(|i| format!("rockpro64-{i}")).collect();
    lab.wait_for(Duration::from_secs(30), "every board switched off at the switch", || {
        names.iter().all(|b| lab.switch_power(b) == "off")
    });
    let offs = || {
        let events = common::ok(&lab.req(serde_json::json!({"fn": "dump"})))["events"].clone();
        events.as_array().unwrap().iter().filter(|e| e["kind"] == "power_off").count()
    };
    lab.wait_for(Duration::from_secs(10), "a power_off event for every board", || offs() >= N);
    assert_eq!(offs(), N, "every board was switched off by labd, and each once");
    assert!(
        !lab.log().contains("did not answer"),
        "no request waited so long for its turn that it timed out:\n{}",
        lab.log()
    );
    let (max, total) = (slow.max.load(Ordering::SeqCst), slow.total.load(Ordering::SeqCst));
    println!("max_in_flight {max_in_flight:?}: at most {max} of {total} requests in flight at the switch");
    (max, total)
}

#[test]
fn one_switch_never_has_more_requests_in_flight_than_its_bound() {
    // Without a bound the six would arrive together: the relay sees it.
    let (max, total) = six_boards_off_at_once(Some(64));
    assert!(max > 2, "six boards switched at once put more than two requests in flight ({max}, of {total})");
    // With max_in_flight = 2, never more than two; and two, so the
    // boards still share the switch rather than queue one by one.
    let (max, total) = six_boards_off_at_once(Some(2));
    assert!(total >= 12, "a set and a read-back per board reached the switch ({total})");
    assert_eq!(max, 2, "at most max_in_flight = 2 requests in flight at the switch (of {total})");
    // The default is the same bound.
    let (max, _) = six_boards_off_at_once(None);
    assert_eq!(max, 2, "the default max_in_flight is 2");
}
