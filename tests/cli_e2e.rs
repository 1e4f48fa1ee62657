//! labcli against a real labd on a labsim lab, as real Unix users: handles
//! in `status --mine` (for their claimant only), board names and
//! `$LABD_HANDLE` in place of handles, the exit statuses and the JSON error
//! shape, `run` (released when the command ends, fails, or labcli is
//! signalled) and `console --expect` on a board that boots.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `labcli --socket SOCK ARGS` as `user` with extra environment.
fn cli(lab: &Lab, user: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    lab.labcli_as(user)
        .env_remove("LABD_HANDLE")
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The JSON on stdout of a `--json` run: its last line (a console copied
/// to stdout comes before it).
fn json_out(o: &Output) -> Value {
    let out = text(&o.stdout);
    let last = out.trim_end().lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn status_of(o: &Output) -> Option<i32> {
    o.status.code()
}

/// Waits for a child to exit, killing it after `limit`.
fn wait_child(mut c: Child, limit: Duration) -> Output {
    let t0 = Instant::now();
    while c.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            let _ = c.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    c.wait_with_output().unwrap()
}

#[test]
fn handles_are_shown_to_their_claimant_and_boards_name_them() {
    let lab = Lab::up(2, "rockpro64", |t| t);
    let o = cli(&lab, ALICE, &["--json", "claim", "rockpro64"], &[]);
    assert_eq!(status_of(&o), Some(0), "{}", text(&o.stderr));
    let claim = json_out(&o);
    let (h, b) = (claim["handle"].as_str().unwrap().to_string(), claim["board"].as_str().unwrap().to_string());
    let bob_claim = json_out(&cli(&lab, BOB, &["--json", "claim", "rockpro64"], &[]));
    let bob_h = bob_claim["handle"].as_str().unwrap().to_string();

    // status --mine: the claimant's own rows carry their handles ...
    let mine = json_out(&cli(&lab, ALICE, &["--json", "status", "--mine"], &[]));
    assert_eq!(mine.as_array().unwrap().len(), 1);
    assert_eq!(mine[0]["handle"], h.as_str());
    let human = text(&cli(&lab, ALICE, &["status", "--mine"], &[]).stdout);
    assert!(human.lines().next().unwrap().ends_with("HANDLE") && human.contains(&h), "{human}");
    // ... and nobody else's status ever does: not the full list, not bob's,
    // not root's (an operator).
    for (user, args) in [(ALICE, &["--json", "status"][..]), (BOB, &["--json", "status", "--mine"]), (BOB, &["status"])]
    {
        let out = text(&cli(&lab, user, args, &[]).stdout);
        assert!(!out.contains(&h), "{user} {args:?} shows alice's handle: {out}");
    }
    for mine in [false, true] {
        let all = lab.req(json!({"fn": "status", "mine": mine}));
        let all = all.to_string();
        assert!(!all.contains(&h) && !all.contains(&bob_h), "root's status shows a handle: {all}");
    }
    let o = lab.as_user(BOB, &[json!({"fn": "status", "mine": true})]).remove(0);
    assert_eq!(ok(&o)[0]["handle"], bob_h.as_str(), "stdin JSON requests get the same rows");

    // A board the caller holds stands for its handle.
    let o = cli(&lab, ALICE, &["--json", "power-on", &b], &[]);
    assert_eq!(status_of(&o), Some(0), "{}", text(&o.stderr));
    assert_eq!(lab.switch_power(&b), "on");
    let o = cli(&lab, ALICE, &["--json", "renew", &b, "--lease", "1h30m"], &[]);
    assert_eq!(status_of(&o), Some(0), "{}", text(&o.stderr));
    // Someone else's board is not theirs to name: labd's constant answer.
    let before = lab.snapshot();
    let o = cli(&lab, BOB, &["--json", "release", &b], &[]);
    assert_eq!(status_of(&o), Some(1));
    assert_eq!(
        json_out(&o),
        json!({"ok": false, "error": {"code": "not_claimed", "message": json_out(&o)["error"]["message"]}})
    );
    assert_eq!(lab.snapshot(), before, "bob naming alice's board changed something");

    // No handle outside a jail: a usage error, nothing sent; LABD_HANDLE
    // (a handle or a board) is the default.
    let o = cli(&lab, ALICE, &["--json", "power-off"], &[]);
    assert_eq!(status_of(&o), Some(2));
    assert_eq!(json_out(&o)["error"]["code"], "usage");
    assert!(text(&o.stderr).contains("needs a HANDLE"), "{}", text(&o.stderr));
    assert_eq!(lab.snapshot(), before);
    let o = cli(&lab, ALICE, &["power-off"], &[("LABD_HANDLE", &h)]);
    assert_eq!(status_of(&o), Some(0), "{}", text(&o.stderr));
    assert_eq!(lab.switch_power(&b), "off");
    let o = cli(&lab, ALICE, &["release"], &[("LABD_HANDLE", &b)]);
    assert_eq!(status_of(&o), Some(0), "{}", text(&o.stderr));
    assert!(lab.board(&b)["user"].is_null(), "released by its name: {}", lab.board(&b));
    ok(&lab.as_user(BOB, &[json!({"fn": "release", "handle": bob_h})]).remove(0));
}

#[test]
fn exit_statuses_and_json_errors_against_labd() {
    let lab = Lab::up(1, "rockpro64", |t| t);
    let gone = lab.path().join("nobody.sock");
    let gone_s = gone.display().to_string();
    for (args, exit, code) in [
        (&["--json", "claim"][..], 2, "usage"),
        (&["--json", "claim", "rockpro64", "--lease", "1h30"], 2, "usage"),
        (&["--json", "claim", "vax780"], 1, "unknown_class"),
        (&["--json", "claim", "rockpro64", "--lease", "9d"], 1, "bad_request"),
        (&["--json", "dump"], 1, "permission_denied"),
    ] {
        let o = cli(&lab, ALICE, args, &[]);
        assert_eq!(status_of(&o), Some(exit), "{args:?}: {}", text(&o.stderr));
        let v = json_out(&o);
        assert_eq!((v["ok"].clone(), v["error"]["code"].clone()), (json!(false), json!(code)), "{args:?}: {v}");
    }
    // labd unreachable: exit 3, the socket named, what to check said.
    let elsewhere = |socket: &str, args: &[&str]| {
        let (uid, gid) = uid_of(ALICE);
        std::process::Command::new(LABCLI)
            .env("LABD_SOCKET", socket)
            .env_remove("SSH_ORIGINAL_COMMAND")
            .args(args)
            .uid(uid)
            .gid(gid)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = elsewhere(&gone_s, &["--json", "status"]);
    assert_eq!(status_of(&o), Some(3));
    assert_eq!(json_out(&o)["error"]["code"], "unreachable");
    assert!(text(&o.stderr).contains(&gone_s) && text(&o.stderr).contains("labd running"), "{}", text(&o.stderr));
    // A socket alice may not use: says so.
    let private = lab.path().join("private");
    std::fs::create_dir_all(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let o = elsewhere(&private.join("s.sock").display().to_string(), &["status"]);
    assert_eq!(status_of(&o), Some(3));
    assert!(text(&o.stderr).contains("socket_group"), "{}", text(&o.stderr));
    assert!(lab.board("rockpro64-1")["user"].is_null(), "nothing was claimed");
}

/// A directory alice may write to, under the lab's.
fn alice_dir(lab: &Lab) -> std::path::PathBuf {
    let d = lab.path().join("alice");
    std::fs::create_dir_all(&d).unwrap();
    let (uid, gid) = uid_of(ALICE);
    std::os::unix::fs::chown(&d, Some(uid), Some(gid)).unwrap();
    d
}

#[test]
fn run_releases_when_the_command_ends_fails_or_labcli_is_signalled() {
    let lab = Lab::up(1, "rockpro64", |t| t);
    let b = "rockpro64-1";
    let d = alice_dir(&lab);
    let seen = d.join("seen");
    // The command sees its claim, uses labcli without a handle, and its
    // status is labcli's.
    let script = format!(
        "echo \"$LABD_BOARD $LABD_HANDLE ${{LABD_JAIL_IP-none}}\" > {s}; {LABCLI} --json status --mine >> {s}; \
         {LABCLI} power-off && exit 7",
        s = seen.display()
    );
    let t0 = Instant::now();
    let o = cli(&lab, ALICE, &["run", "rockpro64", "--power", "--", "sh", "-c", &script], &[]);
    assert_eq!(status_of(&o), Some(7), "{}", text(&o.stderr));
    let got = std::fs::read_to_string(&seen).unwrap();
    let first = got.lines().next().unwrap().to_string();
    let handle = first.split(' ').nth(1).unwrap();
    assert!(first.starts_with(&format!("{b} bl-")) && first.ends_with(" none"), "{got}");
    assert!(got.contains(&format!("\"handle\":\"{handle}\"")), "LABD_SOCKET reaches the same labd: {got}");
    assert!(lab.board(b)["user"].is_null(), "released after the command: {}", lab.board(b));
    assert_eq!(lab.switch_power(b), "off");
    eprintln!("run with a command exiting 7: {:?}", t0.elapsed());

    // A failing command, one that cannot start: released all the same.
    let o = cli(&lab, ALICE, &["run", "rockpro64", "--", "false"], &[]);
    assert_eq!(status_of(&o), Some(1));
    assert!(lab.board(b)["user"].is_null());
    let o = cli(&lab, ALICE, &["--json", "run", "rockpro64", "--", "/nonexistent/cmd"], &[]);
    assert_eq!(status_of(&o), Some(127), "{}", text(&o.stderr));
    assert_eq!(json_out(&o)["error"]["code"], "not_started");
    assert!(lab.board(b)["user"].is_null());
    // No board to be had: the command never runs.
    let held = lab.as_user(BOB, &[json!({"fn": "claim", "class": "rockpro64"})]).remove(0);
    let o = cli(&lab, ALICE, &["run", "rockpro64", "--", "touch", &seen.display().to_string()], &[]);
    assert_eq!(status_of(&o), Some(1));
    assert!(text(&o.stderr).contains("no_device_available"), "{}", text(&o.stderr));
    ok(&lab.as_user(BOB, &[json!({"fn": "release", "handle": ok(&held)["handle"]})]).remove(0));

    // SIGTERM, SIGINT (Ctrl-C) and SIGHUP to labcli: passed on to the command, then the
    // board is released and labcli exits as the command did.
    use nix::sys::signal::Signal;
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        let child = lab
            .labcli_as(ALICE)
            .env_remove("LABD_HANDLE")
            .args(["run", "rockpro64", "--", "sleep", "60"])
            .spawn()
            .unwrap();
        lab.wait_for(Duration::from_secs(10), "run's claim", || lab.board(b)["user"] == ALICE);
        std::thread::sleep(Duration::from_millis(200));
        let t0 = Instant::now();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
        let o = wait_child(child, Duration::from_secs(10));
        assert_eq!(status_of(&o), Some(128 + sig as i32), "{sig}: {}", text(&o.stderr));
        assert!(t0.elapsed() < Duration::from_secs(5), "{sig} took {:?}", t0.elapsed());
        assert!(lab.board(b)["user"].is_null(), "{sig}: not released: {}", lab.board(b));
        assert!(text(&o.stderr).contains(&format!("released {b}")), "{}", text(&o.stderr));
    }
}

#[test]
fn console_expect_watches_a_booting_board() {
    let lab = Lab::up(1, "rockpro64", |t| t);
    let b = "rockpro64-1";
    // The CI pattern: run a job that waits for the boot prompt.
    let t0 = Instant::now();
    let o = cli(
        &lab,
        ALICE,
        &[
            "run",
            "rockpro64",
            "--power",
            "--",
            LABCLI,
            "console",
            "--expect",
            "=> ",
            "--since-claim",
            "--timeout",
            "30s",
        ],
        &[],
    );
    assert_eq!(status_of(&o), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains(&format!("boardlab-sim U-Boot 2024.01 ({b})")), "{}", text(&o.stdout));
    assert!(lab.board(b)["user"].is_null());
    eprintln!("run + console --expect through a boot: {:?}", t0.elapsed());

    let claim = json_out(&cli(&lab, ALICE, &["--json", "claim", "rockpro64", "--power"], &[]));
    let h = claim["handle"].as_str().unwrap().to_string();
    // Never printed: exit 1 (timeout) after the timeout, not before.
    let t0 = Instant::now();
    let o = cli(&lab, ALICE, &["--json", "console", b, "--expect", "never-printed-[0-9]{9}", "--timeout", "1.5s"], &[]);
    let took = t0.elapsed();
    assert_eq!(status_of(&o), Some(1), "{}", text(&o.stderr));
    assert_eq!(json_out(&o)["error"]["code"], "timeout", "{}", text(&o.stdout));
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(6), "{took:?}");

    // Only new output without --since-claim: a power cycle brings the
    // banner again, and the watcher sees it.
    let watcher = lab
        .labcli_as(ALICE)
        .env_remove("LABD_HANDLE")
        .args(["console", &h, "--expect", r"U-Boot 2024\.01 \(rockpro64-1\)", "--timeout", "30s"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let o = cli(&lab, ALICE, &["power-cycle", b], &[]);
    assert_eq!(status_of(&o), Some(0), "{}", text(&o.stderr));
    let o = wait_child(watcher, Duration::from_secs(40));
    assert_eq!(status_of(&o), Some(0), "{}", text(&o.stderr));

    // The claim ends while a watcher waits: exit 1, closed.
    let watcher = lab.labcli_as(ALICE).args(["--json", "console", &h, "--expect", "never-printed"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    ok(&lab.as_user(ALICE, &[json!({"fn": "release", "handle": h})]).remove(0));
    let o = wait_child(watcher, Duration::from_secs(10));
    assert_eq!(status_of(&o), Some(1), "{}", text(&o.stderr));
    assert_eq!(json_out(&o)["error"]["code"], "closed");
    // A bad pattern is a usage error before anything is sent.
    let o = cli(&lab, ALICE, &["console", b, "--expect", "(unclosed"], &[]);
    assert_eq!(status_of(&o), Some(2));
}
