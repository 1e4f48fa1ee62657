//! Free loopback ports for the fixtures. A port is free at the moment of
//! asking (bound to port 0, then released); this test process never hands
//! out the same port twice, so the ports of one etcd cluster, one sshd and
//! one web page are distinct even when the kernel offers a just-released
//! port again (seen: an etcd cluster given one peer port for two members).

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback TCP port no one listened on a moment ago and this process
/// has not handed out before.
pub fn free_port() -> u16 {
    let mut given = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    // Hold every candidate until one is new, so the kernel offers another.
    let mut held = Vec::new();
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = l.local_addr().expect("local address").port();
        if given.insert(port) {
            return port;
        }
        held.push(l);
        assert!(held.len() < 1000, "no fresh loopback port after 1000 tries");
    }
}
