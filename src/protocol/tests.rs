use super::*;

#[test]
fn parses_claim() {
    let r = parse_request(r#"{"id": 7, "fn": "claim", "class": "rockpro64", "power": true}"#).unwrap();
    assert_eq!(r.id, serde_json::json!(7));
    assert_eq!(r.call, Call::Claim { class: "rockpro64".into(), power: true, lease: None, wait: None });
}

#[test]
fn error_codes() {
    let code = |l: &str| parse_request(l).unwrap_err().1.code;
    assert_eq!(code("nope"), Code::BadRequest);
    assert_eq!(code("[1,2]"), Code::BadRequest);
    assert_eq!(code(r#"{"fn": "frobnicate"}"#), Code::UnknownFunction);
    assert_eq!(code(r#"{"fn": "claim"}"#), Code::BadRequest);
    assert_eq!(code(r#"{"fn": "claim", "class": "x", "lease": -5}"#), Code::BadRequest);
    assert_eq!(code(r#"{"fn": "claim", "class": "x", "lease": 1e300}"#), Code::BadRequest);
    assert_eq!(code(r#"{"fn": "status", "colour": 1}"#), Code::BadRequest);
    assert_eq!(code(r#"{"fn": 5}"#), Code::BadRequest);
    assert_eq!(code(r#"{"fn": "sd"}"#), Code::BadRequest);
    assert_eq!(code(r#"{"fn": "sd", "action": "eject"}"#), Code::BadRequest);
    assert_eq!(code(r#"{"fn": "sd", "action": "host", "power_off": "yes"}"#), Code::BadRequest);
    let (id, _) = parse_request(r#"{"id": "x", "fn": "nope"}"#).unwrap_err();
    assert_eq!(id, serde_json::json!("x"));
}

#[test]
fn names_round_trip_and_jails_get_only_their_own_claim() {
    let lines = [
        (r#"{"fn": "classes"}"#, true),
        (r#"{"fn": "status"}"#, true),
        (r#"{"fn": "whoami"}"#, true),
        (r#"{"fn": "known_hosts"}"#, true),
        (r#"{"fn": "renew"}"#, true),
        (r#"{"fn": "reinit"}"#, true),
        (r#"{"fn": "release"}"#, true),
        (r#"{"fn": "power_on"}"#, true),
        (r#"{"fn": "power_off"}"#, true),
        (r#"{"fn": "power_cycle"}"#, true),
        (r#"{"fn": "console"}"#, true),
        (r#"{"fn": "console_log"}"#, true),
        (r#"{"fn": "sd", "action": "status"}"#, true),
        (r#"{"fn": "sd", "action": "flash", "path": "/x", "power_off": true}"#, true),
        (r#"{"fn": "claim", "class": "x"}"#, false),
        (r#"{"fn": "dump"}"#, false),
        (r#"{"fn": "maintenance", "board": "b", "on": true}"#, false),
        (r#"{"fn": "force_release", "board": "b"}"#, false),
        (r#"{"fn": "selftest", "board": "b", "wait": 5}"#, false),
    ];
    for (line, allowed) in lines {
        let r = parse_request(line).unwrap();
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(r.call.name(), v["fn"], "{line}");
        assert_eq!(r.call.allowed_in_jail(), allowed, "{line}");
    }
}

#[test]
fn reply_lines_agree() {
    let id = serde_json::json!({"n": [1, "x"]});
    let result = serde_json::json!([{"board": "b"}]);
    let whole: Value = serde_json::from_str(&ok_reply(&id, &result)).unwrap();
    let pieced: Value = serde_json::from_str(&format!("{}{result}}}", ok_reply_head(&id))).unwrap();
    assert_eq!(whole, pieced);
    assert_eq!(whole, serde_json::json!({"id": id, "ok": true, "result": result}));
}

#[test]
fn outcomes_of_reply_lines() {
    let id = serde_json::json!({"ok": true, "x": "\"ok\":true"});
    let head = ok_reply_head(&id);
    assert_eq!(reply_outcome(&head, &ok_reply(&id, &serde_json::json!([1]))), Ok(()));
    let e = ApiError::new(Code::NotClaimed, "no");
    assert_eq!(reply_outcome(&head, &err_reply(&id, &e)), Err(Code::NotClaimed));
    assert_eq!(reply_outcome(&head, "garbage"), Err(Code::Internal));
}

#[test]
fn user_field_is_ignored_and_as_is_kept() {
    let r = parse_request(r#"{"fn": "whoami", "user": "root", "as": "bob"}"#).unwrap();
    assert_eq!(r.call, Call::Whoami);
    assert_eq!(r.on_behalf_of.as_deref(), Some("bob"));
}

/// Every listed function is known to the parser (its bare call parses or
/// wants arguments, never "unknown"), and names itself as listed.
#[test]
fn every_listed_function_parses_and_names_itself() {
    for f in FUNCTIONS {
        if f == "debug_panic" && !cfg!(feature = "fault-injection") {
            continue;
        }
        match parse_request(&serde_json::json!({"fn": f}).to_string()) {
            Ok(r) => assert_eq!(r.call.name(), f),
            Err((_, e)) => assert_eq!(e.code, Code::BadRequest, "{f}: {e}"),
        }
    }
    let e = parse_request(r#"{"fn": "frobnicate"}"#).unwrap_err().1;
    assert_eq!(e.code, Code::UnknownFunction);
}
