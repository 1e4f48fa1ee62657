//! The main socket's requests in a lab of several hosts: each is
//! answered here, or by the host whose claim or board it is about (over
//! the peer channel), or for a claim, by any host with a free board; and
//! `status` joins the other hosts' rows to this host's.

use serde_json::Value;
use tracing::info;

use super::peer::Remote;
use super::{answer, lab_wait, peer, Front};
use crate::actors::Identity;
use crate::cluster::view::LabView;
use crate::protocol::{self, ApiError, Call, Code, PowerState, Released};

/// A request on the main socket of a host in a lab of several: answered
/// here, or by the host whose board it is about.
pub(super) async fn routed(front: &Front, who: Identity, id: Value, call: Call, raw: Value) -> String {
    let remote = match (call.handle(), peer::board_of(&call)) {
        (Some(h), _) => peer::remote_handle(front, h).await,
        (None, Some(b)) => peer::remote_board(front, b),
        (None, None) => None,
    };
    // A call about another host's claim or board goes there; one about
    // this host's (or no known one) is answered here.
    if let Some(remote) = remote {
        return match remote {
            Err(e) => protocol::err_reply(&id, &e),
            Ok(r) => match peer::call_or_lost(front, &r.host, &r.addr, &raw, &who.user).await {
                Ok(line) => line,
                Err(lost) if lost.sent => answer_lost(front, &who, &id, &call, &r, lost.error).await,
                Err(lost) => protocol::err_reply(&id, &lost.error),
            },
        };
    }
    if call.handle().is_some() {
        return unknown_handle(front, who, id, call, raw).await;
    }
    if matches!(call, Call::Queue) {
        if let Some(queue) = front.peers.as_ref().and_then(|p| p.queue.clone()) {
            // The lab's one queue per class, in etcd.
            return match queue.places(&who.user).await {
                Ok(places) => {
                    let v: Vec<protocol::QueuePlace> = places
                        .into_iter()
                        .map(|(class, place, waiting)| protocol::QueuePlace { class, place, waiting })
                        .collect();
                    protocol::ok_reply(&id, &v)
                }
                Err(e) => protocol::err_reply(
                    &id,
                    &ApiError::new(Code::Unavailable, format!("the lab's queue cannot be read: {e}")),
                ),
            };
        }
    }
    let Call::Claim { class, wait, .. } = &call else { return answer(front, who, id, call).await };
    // One queue per class for the whole lab: a claim that waits takes a
    // ticket; one that does not is refused while anyone waits.
    if let Some(queue) = front.peers.as_ref().and_then(|p| p.queue.clone()) {
        if wait.is_some() {
            return lab_wait::wait(front, &queue, who, id, call, raw).await;
        }
        // From the watched view: no etcd round trip on every claim.
        let n = front.lab.as_ref().map_or(0, |l| l.borrow().waiting(class, crate::util::now_unix_ms()));
        if n > 0 {
            let e = ApiError::new(
                Code::NoDeviceAvailable,
                format!("{n} claims wait for a {class} board in the lab; `claim --wait` joins the queue"),
            );
            return protocol::err_reply(&id, &e);
        }
    }
    claim_now(front, who, id, call, raw).await
}

/// The answer to a request `r.host` took and did not answer (it stopped,
/// or the link broke): never "nothing changed" unless that is known. A
/// release is known done when etcd no longer holds the claim, and known
/// not done when it still does; anything else may have been done.
async fn answer_lost(front: &Front, who: &Identity, id: &Value, call: &Call, r: &Remote, e: ApiError) -> String {
    let host = &r.host;
    info!(host = %host, "a request forwarded to another host lost its answer: {}", e.message);
    if let Call::Release { handle: Some(h) } = call {
        let lookup = front.peers.as_ref().and_then(|p| p.lookup.as_ref());
        if let Some(lookup) = lookup {
            match lookup.find(h).await {
                Ok(None) => {
                    let done = Released {
                        board: r.board.clone(),
                        released: true,
                        user: who.user.clone(),
                        power: PowerState::Unknown,
                        warning: Some(format!(
                            "host {host} stopped answering after it released the claim; \
                             it powers the board off when it is back"
                        )),
                    };
                    return protocol::ok_reply(id, &done);
                }
                Ok(Some(_)) => {
                    let e = ApiError::new(
                        Code::Unavailable,
                        format!(
                            "host {host} stopped answering before it released the claim on {}, which stands \
                             (the lab's shared state still holds it): release it again once the host is back",
                            r.board
                        ),
                    );
                    return protocol::err_reply(id, &e);
                }
                Err(_) => {}
            }
        }
    }
    protocol::err_reply(id, &in_doubt(host, "the request", "it may have been done", &e))
}

/// `host` took `what` and its answer (`e`) was lost: `may` says what may
/// have happened; the claimant's way to find out follows.
fn in_doubt(host: &str, what: &str, may: &str, e: &ApiError) -> ApiError {
    ApiError::new(
        Code::InDoubt,
        format!(
            "host {host} stopped answering after it took {what} ({}): {may}; `labcli status --mine` shows \
             your claims, with their handles, once the host is back",
            e.message
        ),
    )
}

/// A handle neither this host, its view nor etcd knows: answered here,
/// unless another host where the user holds a board knows it (a claim
/// whose record etcd lost for a moment: a failed release applied late,
/// until its host puts the record back).
async fn unknown_handle(front: &Front, who: Identity, id: Value, call: Call, raw: Value) -> String {
    let line = answer(front, who.clone(), id, call).await;
    let not_claimed = |l: &str| serde_json::from_str::<Value>(l).is_ok_and(|v| v["error"]["code"] == "not_claimed");
    if !not_claimed(&line) {
        return line;
    }
    let hosts = peer::hosts_holding(front, &who.user);
    for (host, addr) in &hosts {
        if let Ok(other) = peer::call(front, host, addr, &raw, &who.user).await {
            if !not_claimed(&other) {
                return other;
            }
        }
    }
    if let Some(h) = raw["handle"].as_str() {
        let asked: Vec<&str> = hosts.iter().map(|(h, _)| h.as_str()).collect();
        info!(handle_id = %crate::util::handle_id(h), "no claim with this handle here, in etcd or on the hosts asked: {asked:?}");
    }
    line
}

/// A claim that does not wait, on this host or another.
pub(super) async fn claim_now(front: &Front, who: Identity, id: Value, call: Call, raw: Value) -> String {
    let Call::Claim { class, .. } = &call else { return answer(front, who, id, call).await };
    let hosts = peer::claim_hosts(front, class);
    let mut last = None;
    for (host, addr) in &hosts {
        match peer::call_or_lost(front, host, addr, &raw, &who.user).await {
            Ok(line) => {
                let v = serde_json::from_str::<Value>(&line).unwrap_or(Value::Null);
                if v["ok"] == true || v["error"]["code"] != "no_device_available" {
                    return line;
                }
                last = Some(line);
            }
            // A board may be claimed there: no other host is asked (two
            // claims for one request), and the claimant learns how to
            // find it (its handle is in `status --mine`).
            Err(lost) if lost.sent => {
                info!(host = %host, "a claim forwarded to another host lost its answer: {}", lost.error.message);
                let may = "a board may have been claimed for you there (or its lease ends it)";
                return protocol::err_reply(&id, &in_doubt(host, "the claim", may, &lost.error));
            }
            Err(lost) => last = Some(protocol::err_reply(&id, &lost.error)),
        }
    }
    let local_has_class = front.snapshots.borrow().rows().iter().any(|r| &r.class == class);
    if local_has_class {
        return answer(front, who, id, call).await;
    }
    if let Some(line) = last {
        return line;
    }
    // Not here, and no other host could be asked: say so for the lab.
    match peer::lab_class_summary(front, class) {
        Some(summary) => protocol::err_reply(
            &id,
            &ApiError::new(Code::NoDeviceAvailable, format!("no {class} board is available ({summary})")),
        ),
        None => answer(front, who, id, call).await,
    }
}

/// `local` (this host's boards, a JSON array) followed by the other
/// hosts' boards (`mine`: only those of that user; `handles`: each with
/// its claim's handle, which the view knows from etcd).
pub(super) fn with_other_hosts(local: &str, lab: &LabView, mine: Option<&str>, handles: bool) -> String {
    let mut out = String::with_capacity(local.len() + lab.rows.len() * 200);
    out.push_str(local.strip_suffix(']').unwrap_or("["));
    let mut first = out.len() == 1;
    for r in lab.rows.iter().filter(|r| mine.is_none_or(|u| r.user.as_deref() == Some(u))) {
        if !first {
            out.push(',');
        }
        first = false;
        let json = lab.row_json(r);
        // The claim etcd holds for the board, if it is this user's (a row
        // published a moment ago may still name the claim's previous user).
        let handle = match (mine, lab.claimants.get(&r.board)) {
            (Some(me), Some((user, h))) if handles && user == me => Some(h.as_str()),
            _ => None,
        };
        match handle {
            Some(h) => out.push_str(&crate::actors::registry::with_handle(&json, h)),
            None => out.push_str(&json),
        }
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_hosts_rows_carry_only_the_callers_own_handles() {
        use crate::cluster::view::RemoteRow;
        let row = |board: &str, user: &str| RemoteRow {
            board: board.into(),
            class: "c".into(),
            host: "h2".into(),
            user: Some(user.into()),
            claimable: false,
            json: format!("{{\"board\":\"{board}\"}}"),
        };
        let mut lab =
            LabView { rows: vec![row("b1", "alice"), row("b2", "bob"), row("b3", "alice")], ..Default::default() };
        lab.claimants.insert("b1".into(), ("alice".into(), "bl-a".into()));
        lab.claimants.insert("b2".into(), ("bob".into(), "bl-b".into()));
        // A row published before bob's claim of b3: etcd's record wins.
        lab.claimants.insert("b3".into(), ("bob".into(), "bl-c".into()));
        let v = |s: String| serde_json::from_str::<Value>(&s).unwrap();
        let local = r#"[{"board":"l1","handle":"bl-l"}]"#;
        assert_eq!(
            v(with_other_hosts(local, &lab, Some("alice"), true)),
            serde_json::json!([{"board": "l1", "handle": "bl-l"}, {"board": "b1", "handle": "bl-a"}, {"board": "b3"}])
        );
        assert!(!with_other_hosts("[]", &lab, Some("alice"), false).contains("bl-"));
        assert!(!with_other_hosts("[]", &lab, None, true).contains("bl-"));
    }
}
