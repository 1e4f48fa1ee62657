//! The status page, its event stream and /metrics of a labd on a labsim
//! lab: what they show matches `status` and what the test did, they
//! follow claims as they happen, they never show a claim handle, and the
//! page asks for a password when `[web]` has one.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::browser::until_true;
use common::http::{get, lab_with_page, scrape, value, web_password, Stream};
use common::ports::free_port;
use common::{ok, Lab, ALICE, BOB};
use serde_json::json;

#[test]
fn metrics_and_events_follow_what_was_done_and_never_show_a_handle() {
    let (lab, addr) = lab_with_page("");
    let mut stream = Stream::open(addr, None);
    assert!(stream.until(Duration::from_secs(20), |t| t.contains("event: lab")), "no first event: {}", stream.text);

    let mut handles = Vec::new();
    // alice: two claims (one powered), one released; bob: one with a
    // 1 s lease, which expires; root force-releases alice's other one.
    let r = lab.as_user(
        ALICE,
        &[
            json!({"fn": "claim", "class": "rockpro64", "power": true}),
            json!({"fn": "claim", "class": "rockpro64"}),
            json!({"fn": "claim", "class": "rockpro64"}),
            json!({"fn": "frobnicate"}),
        ],
    );
    let (a1, a2) = (ok(&r[0]).clone(), ok(&r[1]).clone());
    assert_eq!(r[2]["error"]["code"], "no_device_available");
    assert_eq!(r[3]["error"]["code"], "unknown_function");
    handles.push(a1["handle"].as_str().unwrap().to_string());
    handles.push(a2["handle"].as_str().unwrap().to_string());
    let b = lab.as_user(BOB, &[json!({"fn": "claim", "class": "pine64", "lease": 1})]);
    handles.push(ok(&b[0])["handle"].as_str().unwrap().to_string());
    let bobs = ok(&b[0])["board"].as_str().unwrap().to_string();

    // The stream shows alice's boards claimed, without asking.
    let (b1, b2) = (a1["board"].as_str().unwrap().to_string(), a2["board"].as_str().unwrap().to_string());
    let claimed_in_stream = |t: &str, board: &str| {
        t.split("\n\n").any(|e| {
            e.starts_with("event: change")
                && e.contains(&format!(r#""board":"{board}","class":"rockpro64","state":"claimed","user":"{ALICE}""#))
        })
    };
    assert!(
        stream.until(Duration::from_secs(30), |t| claimed_in_stream(t, &b1) && claimed_in_stream(t, &b2)),
        "the stream did not show the claims: {}",
        stream.text
    );

    let rel = lab.as_user(ALICE, &[json!({"fn": "release", "handle": handles[0]})]);
    ok(&rel[0]);
    ok(&lab.req(json!({"fn": "force_release", "board": b2})));
    lab.wait_for(Duration::from_secs(30), "bob's lease to run out", || {
        lab.board(&bobs)["state"] == "available"
            && lab.board(&b1)["state"] == "available"
            && lab.board(&b2)["state"] == "available"
    });

    // /metrics agrees with what was done (the registry counts a claim
    // once it has ended, so wait for the scrape to catch up).
    let mut s = scrape(addr);
    lab.wait_for(Duration::from_secs(30), "the metrics to count every ending", || {
        s = scrape(addr);
        value(&s, "boardlab_claims_expired_total", &[]) == 1.0
            && value(&s, "boardlab_boards", &[("state", "available")]) == 3.0
    });
    assert_eq!(value(&s, "boardlab_claims_granted_total", &[]), 3.0);
    assert_eq!(value(&s, "boardlab_claims_released_total", &[]), 1.0);
    assert_eq!(value(&s, "boardlab_claims_force_released_total", &[]), 1.0);
    assert_eq!(value(&s, "boardlab_claims_expired_total", &[]), 1.0);
    assert_eq!(value(&s, "boardlab_claims_held", &[]), 0.0);
    assert_eq!(value(&s, "boardlab_claims_waiting", &[]), 0.0);
    for class in ["rockpro64", "pine64"] {
        let n = if class == "pine64" { 1.0 } else { 2.0 };
        assert_eq!(value(&s, "boardlab_boards", &[("class", class), ("state", "available")]), n);
        assert_eq!(value(&s, "boardlab_boards", &[("class", class), ("state", "claimed")]), 0.0);
    }
    assert_eq!(value(&s, "boardlab_power_operations_total", &[("switch", "poe1"), ("action", "on")]), 1.0);
    assert!(value(&s, "boardlab_power_operations_total", &[("switch", "poe1"), ("action", "off")]) >= 1.0);
    assert_eq!(value(&s, "boardlab_power_failures_total", &[]), 0.0);
    assert!(value(&s, "boardlab_snmp_request_duration_seconds_count", &[("switch", "poe1")]) >= 2.0);
    assert_eq!(value(&s, "boardlab_requests_total", &[("function", "claim"), ("outcome", "ok")]), 3.0);
    let busy = [("function", "claim"), ("outcome", "no_device_available")];
    assert_eq!(value(&s, "boardlab_requests_total", &busy), 1.0);
    let unknown = [("function", "invalid"), ("outcome", "unknown_function")];
    assert_eq!(value(&s, "boardlab_requests_total", &unknown), 1.0);
    assert_eq!(value(&s, "boardlab_requests_total", &[("function", "force_release"), ("outcome", "ok")]), 1.0);
    assert!(value(&s, "boardlab_console_read_bytes_total", &[]) > 0.0, "labsim's boards print on their consoles");

    // A board actor that panics is restarted, and counted.
    ok(&lab.req(json!({"fn": "debug_panic", "board": b1})));
    lab.wait_for(Duration::from_secs(30), "the restart in the metrics", || {
        value(&scrape(addr), "boardlab_actor_restarts_total", &[("board", &b1)]) == 1.0
    });
    lab.wait_for(Duration::from_secs(30), "the board back", || lab.board(&b1)["state"] == "available");

    // Now with a claim held: the gauges and the page show it.
    let c = lab.as_user(BOB, &[json!({"fn": "claim", "class": "rockpro64"})]);
    handles.push(ok(&c[0])["handle"].as_str().unwrap().to_string());
    let s = scrape(addr);
    assert_eq!(value(&s, "boardlab_claims_held", &[("class", "rockpro64")]), 1.0);
    assert_eq!(value(&s, "boardlab_boards", &[("class", "rockpro64"), ("state", "claimed")]), 1.0);
    let page = get(addr, "/", None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&format!("<td>{BOB}</td>")), "{}", page.body);
    assert!(page.header("content-security-policy").is_some_and(|c| c.contains("script-src 'self'")));

    // No handle anywhere: page, stream, metrics, script.
    let metrics = get(addr, "/metrics", None).body;
    stream.until(Duration::from_secs(5), |t| t.contains(BOB));
    for text in [&page.body, &stream.text, &metrics, &get(addr, "/app.js", None).body] {
        for h in &handles {
            assert!(!text.contains(h.as_str()), "a claim handle is shown: {h}");
        }
        assert!(!handle_shaped(text), "nothing shaped like a handle: {text}");
    }
    assert_eq!(get(addr, "/nothing-here", None).status, 404);
}

#[test]
fn the_page_asks_for_its_password_when_it_has_one() {
    let dir = tempfile::tempdir().unwrap();
    let (_lab, addr) = lab_with_page(&web_password(dir.path(), "correct horse"));
    for path in ["/", "/events", "/metrics", "/app.js", "/app.css"] {
        let a = get(addr, path, None);
        assert_eq!(a.status, 401, "{path} without a password: {a:?}");
        assert!(a.header("www-authenticate").is_some_and(|h| h.starts_with("Basic realm=")), "{a:?}");
        assert_eq!(get(addr, path, Some(("ops", "wrong horse"))).status, 401, "{path}");
        assert_eq!(get(addr, path, Some(("root", "correct horse"))).status, 401, "{path}");
    }
    for path in ["/", "/metrics", "/app.js", "/app.css"] {
        assert_eq!(get(addr, path, Some(("ops", "correct horse"))).status, 200, "{path}");
    }
    let mut s = Stream::open(addr, Some(("ops", "correct horse")));
    assert!(s.until(Duration::from_secs(20), |t| t.contains("event: lab")), "{}", s.text);
    let lab = s.events("lab");
    assert_eq!(lab[0]["boards"].as_array().map(Vec::len), Some(3), "{lab:?}");
}

/// Whether `t` holds `bl-` and 32 hex digits.
fn handle_shaped(t: &str) -> bool {
    t.match_indices("bl-").any(|(i, _)| {
        t.as_bytes()
            .get(i + 3..i + 35)
            .is_some_and(|h| h.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c)))
    })
}

/// The boards table as the page shows it: one array of cell texts a row.
const TABLE: &str = "return Array.from(document.querySelectorAll('#boards tbody tr'))
    .map(r => Array.from(r.cells).map(c => c.textContent));";

#[test]
fn the_page_in_chromium_follows_a_claim_without_a_reload() {
    let (lab, addr) = lab_with_page("");
    let driver = common::browser::Driver::start(lab.path());
    let profile = lab.path().join("chrome");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = driver.session(&profile).await;
        c.goto(&format!("http://{addr}/")).await.unwrap();
        let slow = Duration::from_secs(60);
        until_true(&c, slow, "the event stream", "return document.body.dataset.live === '1';").await;

        // The table is the status reply's.
        let status = ok(&lab.req(json!({"fn": "status"}))).as_array().unwrap().clone();
        let table = c.execute(TABLE, vec![]).await.unwrap();
        let rows = table.as_array().unwrap();
        assert_eq!(rows.len(), status.len(), "{table}");
        for (row, b) in rows.iter().zip(&status) {
            let cell = |i: usize| row[i].as_str().unwrap_or("").to_string();
            let s = |k: &str| b[k].as_str().unwrap_or("").to_string();
            assert_eq!(
                (cell(0), cell(1), cell(2), cell(3), cell(4), cell(6), cell(7)),
                (s("board"), s("class"), s("state"), s("user"), s("power"), s("console"), s("fault")),
                "{row} against {b}"
            );
        }

        // A claim through the socket shows in the page without a reload
        // (what the script stored on the window survives).
        c.execute("window.__bltest = 'same page'; return true;", vec![]).await.unwrap();
        let r = lab.as_user(ALICE, &[json!({"fn": "claim", "class": "pine64", "power": true})]);
        let claim = ok(&r[0]).clone();
        let board = claim["board"].as_str().unwrap().to_string();
        let shown = format!(
            "return Array.from(document.querySelectorAll('#boards tbody tr')).some(r => r.dataset.board === '{board}'
                && r.cells[2].textContent === 'claimed' && r.cells[3].textContent === '{ALICE}'
                && r.cells[4].textContent === 'on' && /left$/.test(r.cells[5].textContent));"
        );
        until_true(&c, slow, "the claim in the page", &shown).await;
        until_true(
            &c,
            slow,
            "the claim in the events",
            "return document.querySelector('#events tbody').textContent.includes('claim');",
        )
        .await;
        let same = c.execute("return window.__bltest;", vec![]).await.unwrap();
        assert_eq!(same, json!("same page"), "the page was reloaded");
        let source = c.source().await.unwrap();
        assert!(!source.contains(claim["handle"].as_str().unwrap()), "the handle is on the page");

        // For humans: target/web-status.png.
        let png = c.screenshot().await.unwrap();
        let target = std::path::Path::new(common::LABD).parent().and_then(|p| p.parent()).unwrap().to_path_buf();
        std::fs::write(target.join("web-status.png"), png).unwrap();
        c.close().await.unwrap();
    });
    drop(driver);
}

#[test]
fn a_page_port_in_use_stops_labd_at_start_saying_so() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let lab = Lab::create(1, "rockpro64", &[], |t| format!("{t}\n[web]\nlisten = \"127.0.0.1:{port}\"\n"));
    let out = std::process::Command::new(common::LABD).arg("--config").arg(lab.path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&format!("labd: the status page cannot listen on 127.0.0.1:{port}")), "{err}");
    assert!(!lab.sock().exists(), "no socket is left behind");
}

#[test]
fn a_jailed_claim_is_timed_and_its_keys_stay_off_the_page() {
    let _turn = common::jails::one_at_a_time();
    const NET: common::jails::JailNet =
        common::jails::JailNet { pool: "10.199.7.0/24", board_net: "172.31.208.0/20", uid_base: 9_700_000 };
    let port = free_port();
    let mut lab = common::jails::jail_lab(1, "rockpro64", &NET, "", &format!("[web]\nlisten = \"127.0.0.1:{port}\"\n"));
    lab.start_labd();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut stream = Stream::open(addr, None);
    assert!(stream.until(Duration::from_secs(20), |t| t.contains("event: lab")), "{}", stream.text);
    let r = lab.as_user(ALICE, &[json!({"fn": "claim", "class": "rockpro64"})]);
    let claim = ok(&r[0]).clone();
    let jail = &claim["jail"];
    assert!(jail["host_key"].as_str().is_some_and(|k| k.contains("ssh-ed25519")), "{claim}");
    let s = scrape(addr);
    assert_eq!(value(&s, "boardlab_jail_build_duration_seconds_count", &[]), 1.0);
    assert!(value(&s, "boardlab_jail_build_duration_seconds_sum", &[]) > 0.0);
    assert!(stream.until(Duration::from_secs(30), |t| t.contains(r#""state":"claimed""#)), "{}", stream.text);
    let key = jail["host_key"].as_str().unwrap().split_whitespace().nth(2).unwrap().to_string();
    let users_key = std::fs::read_to_string(lab.path().join(format!("keys.d/{ALICE}.pub"))).unwrap();
    let users_key = users_key.split_whitespace().nth(1).unwrap().to_string();
    let secrets = [
        claim["handle"].as_str().unwrap().to_string(),
        key,
        users_key,
        jail["host_name"].as_str().unwrap().to_string(),
    ];
    for text in [&get(addr, "/", None).body, &stream.text, &get(addr, "/metrics", None).body] {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{secret} is shown");
        }
    }
    let released = lab.as_user(ALICE, &[json!({"fn": "release", "handle": claim["handle"]})]);
    ok(&released[0]);
}
