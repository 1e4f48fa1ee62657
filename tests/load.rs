//! Load: many clients at once over the socket against a large lab. Checks
//! correctness only (speed is labbench's business): every reply is a
//! well-formed answer to its own request, the only error is
//! `no_device_available`, and no board is ever held by two clients.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const CLIENTS: usize = 50;
const BOARDS: usize = 200;

/// Sends one request and checks the reply's shape; returns the reply.
fn call(w: &mut UnixStream, r: &mut BufReader<UnixStream>, id: u64, mut req: Value) -> Value {
    req["id"] = json!(id);
    w.write_all(format!("{req}\n").as_bytes()).expect("sending");
    let mut line = String::new();
    assert!(r.read_line(&mut line).expect("reading") > 0, "labd closed the connection");
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("malformed reply {line:?}: {e}"));
    assert_eq!(v["id"], json!(id), "reply to another request: {v}");
    match &v["ok"] {
        Value::Bool(true) => assert!(v.get("result").is_some(), "ok without result: {v}"),
        Value::Bool(false) => assert_eq!(v["error"]["code"], "no_device_available", "unexpected error for {req}: {v}"),
        _ => panic!("reply without ok: {v}"),
    }
    v
}

#[test]
fn many_clients_many_boards() {
    let mut lab = Lab::create(BOARDS, "rockpro64,pine64", &["--no-net", "--no-console"], |t| t);
    lab.start_labd();
    // board → the client holding it, kept by the clients themselves.
    let holders: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let end = Instant::now() + Duration::from_secs(4);
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (sock, holders) = (lab.sock(), holders.clone());
            std::thread::spawn(move || {
                let mut w = UnixStream::connect(sock).unwrap();
                w.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut r = BufReader::new(w.try_clone().unwrap());
                let (mut id, mut claims, mut busy) = (0u64, 0u64, 0u64);
                // Some clients hold several boards at once, so that the
                // smaller class runs out now and then.
                let hold = 1 + i % 4;
                let class = if i % 3 == 0 { "pine64" } else { "rockpro64" };
                let mut mine: Vec<(String, Value)> = Vec::new();
                while Instant::now() < end {
                    id += 1;
                    if id % 7 == 0 {
                        let s = call(&mut w, &mut r, id, json!({"fn": "status"}));
                        assert_eq!(s["result"].as_array().map(|a| a.len()), Some(BOARDS));
                        continue;
                    }
                    if mine.len() < hold {
                        let v = call(&mut w, &mut r, id, json!({"fn": "claim", "class": class}));
                        if v["ok"] == true {
                            let board = v["result"]["board"].as_str().unwrap().to_string();
                            assert_eq!(v["result"]["user"], "root");
                            if let Some(other) = holders.lock().unwrap().insert(board.clone(), i) {
                                panic!("{board} given to client {i} while client {other} holds it");
                            }
                            mine.push((board, v["result"]["handle"].clone()));
                            claims += 1;
                        } else {
                            busy += 1;
                        }
                    } else {
                        let (board, handle) = mine.remove(0);
                        // Forget it first: once labd answers, it may go to another.
                        holders.lock().unwrap().remove(&board);
                        let v = call(&mut w, &mut r, id, json!({"fn": "release", "handle": handle}));
                        assert_eq!(v["result"]["released"], true, "{v}");
                    }
                }
                (claims, busy, id)
            })
        })
        .collect();
    let (mut claims, mut busy, mut requests) = (0, 0, 0);
    for t in threads {
        let (c, b, n) = t.join().expect("a client failed");
        claims += c;
        busy += b;
        requests += n;
    }
    println!(
        "load: {CLIENTS} clients, {BOARDS} boards: {requests} requests, {claims} claims, {busy} no_device_available"
    );
    assert!(claims > 100, "hardly any claims: {claims}");
    // What the clients still hold is exactly what status shows.
    let s = lab.req(json!({"fn": "status"}));
    let claimed: HashMap<String, Value> = ok(&s)
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["state"] == "claimed")
        .map(|b| (b["board"].as_str().unwrap().to_string(), b["user"].clone()))
        .collect();
    let held = holders.lock().unwrap();
    assert_eq!(claimed.len(), held.len(), "status and the clients disagree on how many boards are held");
    for b in held.keys() {
        assert_eq!(claimed.get(b), Some(&json!("root")), "{b} held by a client but not claimed in status");
    }
}
