//! A jail's resource limits, tried the way a claimant who is root in their
//! jail would: as many processes as it can make, more memory than it may
//! have, more disk than its cap, and thousands of connections to labd.
//! Each attack must fail inside the jail while the host, labd and the
//! other claims carry on.

mod common;

use std::time::{Duration, Instant};

use common::jails::{jail_lab, leftovers, one_at_a_time, JailNet, Login};
use common::*;
use serde_json::{json, Value};

fn claim_jailed(lab: &Lab, user: &str) -> Value {
    let r = lab.as_user(user, &[json!({"fn": "claim", "class": "rockpro64"})]).remove(0);
    ok(&r).clone()
}

/// The jail's cgroup directory in the v1 `controller` hierarchy, found
/// through the jail's init (whose cgroup it is).
fn cgroup_dir(login: &Login, controller: &str) -> Option<std::path::PathBuf> {
    // Inside, the jail sees its own cgroup as "/": ask the host instead,
    // by the init's host PID (PID 1 inside is the init).
    let _ = login;
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mnt = text.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mut r = right.split_whitespace();
        (r.next()? == "cgroup" && r.nth(1)?.split(',').any(|o| o == controller))
            .then(|| left.split_whitespace().nth(4).map(std::path::PathBuf::from))?
    })?;
    Some(mnt)
}

#[test]
fn a_jail_cannot_take_the_hosts_processes_memory_or_disk() {
    let _turn = one_at_a_time();
    const NET: JailNet = JailNet { pool: "10.194.0.0/24", board_net: "172.25.0.0/20", uid_base: 5_000_000 };
    let mut lab = jail_lab(
        2,
        "rockpro64",
        &NET,
        "pids_max = 200\nmemory_max = \"256M\"\ncpu_weight = 50\ndata_size = \"64M\"",
        "",
    );
    lab.start_labd();
    let dir = lab.path().to_path_buf();
    let a = claim_jailed(&lab, ALICE);
    let login = Login::new(&dir, ALICE, &a["jail"], "lim");

    // Every process of the jail is in its cgroup, with the caps written.
    let board = a["board"].as_str().unwrap();
    let pids_root = cgroup_dir(&login, "pids").expect("a v1 pids hierarchy on this machine");
    let found: Vec<std::path::PathBuf> =
        walk(&pids_root).into_iter().filter(|p| p.ends_with(format!("jail-{board}"))).collect();
    assert_eq!(found.len(), 1, "one cgroup for the jail: {found:?}");
    let cg = &found[0];
    assert_eq!(std::fs::read_to_string(cg.join("pids.max")).unwrap().trim(), "200");
    let procs = std::fs::read_to_string(cg.join("cgroup.procs")).unwrap();
    assert!(procs.split_whitespace().count() >= 3, "the init, sshd, dnsmasq (and ganesha) are in it: {procs}");
    let inside = login.ok("cat /proc/self/cgroup");
    assert!(inside.lines().all(|l| l.ends_with(":/")), "the jail sees its cgroup as its root: {inside}");

    // 5,000 processes: the jail gets what its cap allows, no more. (The
    // bomb runs detached: once the jail is full, not even a shell of the
    // test's own could start in it; the host counts.)
    login.ok("setsid nohup sh -c 'for i in $(seq 5000); do sleep 120 & done' >/dev/null 2>&1 </dev/null &");
    let t0 = Instant::now();
    let current = || -> u32 { std::fs::read_to_string(cg.join("pids.current")).unwrap().trim().parse().unwrap() };
    let refused = || -> u64 {
        let t = std::fs::read_to_string(cg.join("pids.events")).unwrap();
        t.split_whitespace().nth(1).unwrap_or("0").parse().unwrap()
    };
    lab.wait_for(Duration::from_secs(60), "the jail to hit its process cap", || refused() > 0);
    let n = current();
    assert!(n <= 200, "at most pids_max processes in the jail, saw {n}");
    eprintln!("fork bomb: {n} processes, {} forks refused after {:?}", refused(), t0.elapsed());
    // Meanwhile the lab works for everyone else.
    let s = lab.req(json!({"fn": "status"}));
    ok(&s);
    let b = claim_jailed(&lab, BOB);
    let bl = Login::new(&dir, BOB, &b["jail"], "lim-b");
    assert_eq!(bl.ok("id -u").trim(), "0", "bob's jail works while alice's is full");
    // The test ends its own bomb from the host (the jail has no room).
    for pid in std::fs::read_to_string(cg.join("cgroup.procs")).unwrap().split_whitespace() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "sleep" || comm.trim() == "sh" {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid.parse().unwrap()),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    lab.wait_for(Duration::from_secs(10), "the jail's bomb to be gone", || current() < 20);

    // 2 GiB of anonymous memory: the allocation dies, the jail stays.
    let o = login.run("dd if=/dev/zero of=/dev/null bs=2G count=1");
    assert!(!o.status.success(), "a 2 GiB buffer in a 256M jail: {o:?}");
    let mem_root = cgroup_dir(&login, "memory").expect("a v1 memory hierarchy");
    let mcg = walk(&mem_root).into_iter().find(|p| p.ends_with(format!("jail-{board}"))).expect("memory cgroup");
    let max: u64 = std::fs::read_to_string(mcg.join("memory.max_usage_in_bytes")).unwrap().trim().parse().unwrap();
    assert!(max <= 256 << 20, "the jail never used more than its cap: {max}");
    assert_eq!(login.ok("echo still here").trim(), "still here");

    // 200 MB into /tmp: the jail fills its own 64M file system, not the
    // host's disk; the image on the host stays within its size.
    let o = login.run("dd if=/dev/zero of=/tmp/fill bs=1M count=200");
    assert!(!o.status.success(), "200 MB into a 64M jail: {o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("No space left"), "{o:?}");
    let img = dir.join(format!("jails/.state/{board}/data.img"));
    let on_disk = std::fs::metadata(&img).map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512).unwrap();
    assert!(on_disk <= 64 << 20, "the image takes at most its size on the host: {on_disk}");
    // Also through every other writable directory: the same cap.
    let o = login.run("dd if=/dev/zero of=/root/more bs=1M count=16");
    assert!(!o.status.success(), "the cap covers /root too: {o:?}");
    login.ok("rm -f /tmp/fill /root/more && echo written > /tmp/after && cat /tmp/after");
    assert!(lab.board(board)["state"] == "claimed");

    for (u, c) in [(ALICE, &a), (BOB, &b)] {
        ok(&lab.as_user(u, &[json!({"fn": "release", "handle": c["handle"]})]).remove(0));
    }
    assert!(!cg.exists(), "the jail's cgroup goes with the jail");
    drop(lab);
    let left = leftovers(&dir, NET.uid_base, 2);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

/// Every directory under `root` (a cgroup tree), depth first.
fn walk(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.filter_map(|e| e.ok()) {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(e.path());
                    out.push(e.path());
                }
            }
        }
    }
    let _ = Duration::ZERO;
    out
}

/// A claim directory an older labd left (plain directories on the host's
/// disk, the nfsroot image in `.nfs`) moves into the claim's own file
/// system when its jail is next built: nothing is lost in an upgrade.
#[test]
fn an_older_labds_claim_data_moves_into_its_own_file_system() {
    let _turn = one_at_a_time();
    const NET: JailNet = JailNet { pool: "10.194.1.0/24", board_net: "172.25.16.0/20", uid_base: 5_300_000 };
    let mut lab = jail_lab(1, "rockpro64", &NET, "data_size = \"128M\"", "");
    let dir = lab.path().to_path_buf();
    let old = dir.join("jails/rockpro64-1");
    std::fs::create_dir_all(old.join("home")).unwrap();
    std::fs::write(old.join("home/migrated.txt"), "kept across the upgrade\n").unwrap();
    std::fs::create_dir_all(old.join(".nfs")).unwrap();
    lab.start_labd();
    let a = claim_jailed(&lab, ALICE);
    let login = Login::new(&dir, ALICE, &a["jail"], "mig");
    assert_eq!(login.ok("cat /home/migrated.txt").trim(), "kept across the upgrade");
    let df = login.ok("df -k /home | tail -1");
    let size_k: u64 = df.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(size_k <= 128 * 1024, "the data now lives in its 128M file system: {df}");
    assert!(!dir.join("jails/.state/rockpro64-1/old-data").exists());
    ok(&lab.as_user(ALICE, &[json!({"fn": "release", "handle": a["handle"]})]).remove(0));
    assert!(!old.exists(), "release wipes the claim's directory");
    drop(lab);
    let left = leftovers(&dir, NET.uid_base, 1);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

/// Opens N connections to a Unix socket and holds them; prints how many
/// labd kept open and how many it refused as busy.
const FLOOD_PL: &str = r#"use IO::Socket::UNIX; use IO::Select;
my ($path, $n, $hold) = @ARGV; my @s;
for (1..$n) { my $c = IO::Socket::UNIX->new(Peer => $path, Type => SOCK_STREAM) or last; push @s, $c; }
select(undef, undef, undef, 1.5);
my ($open, $busy, $other, $why) = (0, 0, 0, "");
for my $c (@s) {
  my $sel = IO::Select->new($c);
  if ($sel->can_read(0)) {
    my $l = <$c>;
    if (defined $l && $l =~ /"busy"/) { $busy++; $why = $l } elsif (defined $l) { $other++ } else { $busy++ }
  } else { $open++ }
}
print "open $open busy $busy other $other $why"; STDOUT->flush; sleep $hold;
"#;

/// (kept open, refused, the refusal's reply line).
fn flood_counts(out: &str) -> (u32, u32, Value) {
    let w: Vec<&str> = out.splitn(7, ' ').collect();
    (w[1].parse().unwrap(), w[3].parse().unwrap(), serde_json::from_str(w[6].trim()).unwrap_or(Value::Null))
}

/// 5,000 connections from one jail to its socket, and 5,000 from one
/// user to the main socket: each gets its cap and a clear `busy` for the
/// rest, while everyone else is served; idle connections are closed.
#[test]
fn a_connection_flood_takes_only_its_own_share_of_labd() {
    let _turn = one_at_a_time();
    const NET: JailNet = JailNet { pool: "10.194.2.0/24", board_net: "172.25.32.0/20", uid_base: 5_600_000 };
    let mut lab = jail_lab(2, "rockpro64", &NET, "", "");
    let dir = lab.path().to_path_buf();
    let toml = dir.join("lab.toml");
    let t = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, t.replacen("[daemon]\n", "[daemon]\nconnections_per_user = 32\nidle_timeout = \"3s\"\n", 1))
        .unwrap();
    lab.start_labd();
    let labd_pid = lab.labd.as_ref().unwrap().id();
    let a = claim_jailed(&lab, ALICE);
    let login = Login::new(&dir, ALICE, &a["jail"], "flood");
    login.ok(&format!("cat > /root/flood.pl <<'EOF'\n{FLOOD_PL}EOF\n"));

    // From the jail: its cap, busy for the rest.
    let mut jail_flood = login
        .command("ulimit -n 12000; perl /root/flood.pl /run/boardlab/jail.sock 5000 8")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // From bob's uid on the main socket, at the same time.
    std::fs::write(dir.join("flood.pl"), FLOOD_PL).unwrap();
    let mut bob_flood = command_as(BOB, "sh")
        .args(["-c", "ulimit -n 12000; exec perl \"$0\" \"$1\" 5000 8"])
        .arg(dir.join("flood.pl"))
        .arg(lab.sock())
        .spawn()
        .unwrap();
    // While both floods hold their connections, others are served.
    std::thread::sleep(Duration::from_secs(3));
    let t0 = Instant::now();
    ok(&lab.req(json!({"fn": "status"})));
    let r = lab.as_user(ALICE, &[json!({"fn": "status"})]).remove(0);
    ok(&r);
    // (bob is the one flooding: his own cap refuses him, as it should.)
    let b = claim_jailed(&lab, ALICE);
    assert_eq!(Login::new(&dir, ALICE, &b["jail"], "flood-b").ok("id -u").trim(), "0");
    eprintln!("served during the floods in {:?}", t0.elapsed());
    let read_line = |c: &mut std::process::Child| {
        use std::io::BufRead;
        let mut l = String::new();
        std::io::BufReader::new(c.stdout.take().unwrap()).read_line(&mut l).unwrap();
        l
    };
    for (who, flood) in [("the jail", &mut jail_flood), ("bob", &mut bob_flood)] {
        let (open, busy, why) = flood_counts(&read_line(flood));
        assert!(open <= 32 && busy >= 4000, "{who}: {open} open, {busy} refused");
        // A refused connection is told why.
        assert_eq!(why["error"]["code"], "busy", "{who}: {why}");
        assert!(why["error"]["message"].as_str().unwrap().contains("connections_per_user"), "{who}: {why}");
    }
    let _ = jail_flood.wait();
    let _ = bob_flood.wait();
    // Flood over: the jail's socket serves again; labd's descriptors are
    // back to what they were.
    let w: Value = serde_json::from_str(&login.ok("labcli --json whoami")).unwrap();
    assert_eq!(w["user"], ALICE);
    let fds = std::fs::read_dir(format!("/proc/{labd_pid}/fd")).unwrap().count();
    assert!(fds < 200, "labd holds {fds} descriptors after the floods");
    // Idle connections are closed with a reason.
    let mut idle = Conn::open(&lab.sock());
    let t0 = Instant::now();
    let r = idle.read_reply().expect("a reason before the close");
    assert_eq!(r["error"]["code"], "timeout", "{r}");
    assert!(t0.elapsed() >= Duration::from_secs(2) && t0.elapsed() < Duration::from_secs(10));
    assert!(idle.closed());
    for (u, c) in [(ALICE, &a), (ALICE, &b)] {
        ok(&lab.as_user(u, &[json!({"fn": "release", "handle": c["handle"]})]).remove(0));
    }
    drop(lab);
    let left = leftovers(&dir, NET.uid_base, 2);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

/// labd's state is root's alone whatever starts it, here with umask 000:
/// the state directory and database, the host keys, the console logs and
/// the jails' data; no other local user reads a handle or enters a jail's
/// directories.
#[test]
fn labds_state_is_private_whatever_starts_it() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let _turn = one_at_a_time();
    const NET: JailNet = JailNet { pool: "10.194.3.0/24", board_net: "172.25.48.0/20", uid_base: 5_900_000 };
    let mut lab = jail_lab(1, "rockpro64", &NET, "", "");
    let dir = lab.path().to_path_buf();
    let toml = dir.join("lab.toml");
    let t = std::fs::read_to_string(&toml).unwrap();
    let state_line = t.lines().find(|l| l.starts_with("state")).unwrap().to_string();
    let logs_line = t.lines().find(|l| l.starts_with("log_dir")).unwrap().to_string();
    let t = t
        .replace(&state_line, &format!("state = \"{}/private/state.db\"", dir.display()))
        .replace(&logs_line, &format!("log_dir = \"{}/logs-private\"", dir.display()));
    std::fs::write(&toml, t).unwrap();
    // A world-readable directory, as an older labd (or an operator) left it.
    std::fs::create_dir_all(dir.join("jails")).unwrap();
    std::fs::set_permissions(dir.join("jails"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    lab.start_labd_with(&[], |c| {
        // SAFETY: umask is async-signal-safe.
        unsafe {
            c.pre_exec(|| {
                libc::umask(0);
                Ok(())
            });
        }
    });
    let a = claim_jailed(&lab, ALICE);
    let board = a["board"].as_str().unwrap().to_string();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&dir.join("private")), 0o700, "the state directory");
    for f in ["state.db", "state.db-wal", "state.db-shm"] {
        let p = dir.join("private").join(f);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{f}");
        }
    }
    assert_eq!(mode(&dir.join("logs-private")), 0o700, "the log directory");
    assert_eq!(mode(&dir.join("jails")), 0o711, "root_dir: walk-through only");
    assert_eq!(mode(&dir.join(format!("jails/{board}"))), 0o700, "the claim's directory");
    assert_eq!(mode(&dir.join(format!("jails/.state/{board}"))), 0o700, "the claim's images");
    let keys = dir.join("jails/.claimkeys/.hostkeys");
    assert_eq!(mode(&keys), 0o700, "the host keys' directory");
    for e in std::fs::read_dir(&keys).unwrap().filter_map(|e| e.ok()) {
        let m = mode(&e.path());
        assert!(m & 0o077 == 0 || e.file_name().to_string_lossy().ends_with(".pub"), "{:?} is {m:o}", e.path());
    }
    // And bob, a local user, can read none of it.
    let (uid, gid) = uid_of(BOB);
    for p in [dir.join("private/state.db"), dir.join(format!("jails/{board}/tmp")), keys.clone()] {
        let o = std::process::Command::new("ls").arg(&p).uid(uid).gid(gid).output().unwrap();
        assert!(!o.status.success(), "bob can list {}", p.display());
    }
    let o = std::process::Command::new("cat").arg(dir.join("private/state.db")).uid(uid).gid(gid).output().unwrap();
    assert!(!o.status.success(), "bob can read the state database");
    // The main socket still serves every user.
    ok(&lab.as_user(BOB, &[json!({"fn": "whoami"})]).remove(0));
    ok(&lab.as_user(ALICE, &[json!({"fn": "release", "handle": a["handle"]})]).remove(0));
}

/// A tiny package: /usr/bin/boardlab-hello and a conffile in
/// /etc/default (a directory the host's /etc has).
fn build_deb(dir: &std::path::Path) -> std::path::PathBuf {
    let root = dir.join("pkg");
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::create_dir_all(root.join("etc/default")).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        "Package: boardlab-test-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: boardlab tests <root@localhost>\nDescription: a package installed in a jail by the tests\n",
    )
    .unwrap();
    std::fs::write(root.join("DEBIAN/conffiles"), "/etc/default/boardlab-hello\n").unwrap();
    std::fs::write(root.join("usr/bin/boardlab-hello"), "#!/bin/sh\necho hello from a jail package\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.join("usr/bin/boardlab-hello"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(root.join("etc/default/boardlab-hello"), "GREETING=hello\n").unwrap();
    let deb = dir.join("boardlab-test-hello.deb");
    let o = std::process::Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(&deb)
        .output()
        .unwrap();
    assert!(o.status.success(), "dpkg-deb: {}", String::from_utf8_lossy(&o.stderr));
    deb
}

/// The claimant is root in the jail: accounts and packages work there, and
/// change nothing of the host's.
#[test]
fn useradd_passwd_and_package_installs_work_in_a_jail_and_stay_there() {
    let _turn = one_at_a_time();
    const NET: JailNet = JailNet { pool: "10.194.4.0/24", board_net: "172.25.64.0/20", uid_base: 6_200_000 };
    let mut lab = jail_lab(1, "rockpro64", &NET, "", "");
    lab.start_labd();
    let dir = lab.path().to_path_buf();
    let a = claim_jailed(&lab, ALICE);
    let login = Login::new(&dir, ALICE, &a["jail"], "pkg");
    login.ok("useradd -m -s /bin/sh tester && id tester && test -d /home/tester");
    login.ok("echo tester:Secret-123 | chpasswd && grep -q '^tester:\\$' /etc/shadow");
    assert_eq!(login.ok("su tester -c 'id -un'").trim(), "tester");
    login.ok("passwd -l tester && passwd -S tester | grep -q ' L '");
    login.ok("usermod -aG users tester && groupadd lab && gpasswd -a tester lab");
    // A package: its program in /usr/bin and its conffile in /etc/default.
    let deb = std::fs::read(build_deb(&dir)).unwrap();
    let mut c = login.command("cat > /tmp/hello.deb && dpkg -i /tmp/hello.deb && boardlab-hello && dpkg -s boardlab-test-hello && cat /etc/default/boardlab-hello");
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&deb).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "installing in the jail: {out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("hello from a jail package") && out.contains("Status: install ok installed"), "{out}");
    assert!(out.contains("GREETING=hello"), "{out}");
    // The jail's other packages are still known (the host's database,
    // seen through the overlay), and its files are the jail's root's.
    login.ok("dpkg -s openssh-server >/dev/null && test \"$(stat -c %u /usr/bin/boardlab-hello)\" = 0");
    // Nothing of it reached the host.
    assert!(!std::path::Path::new("/usr/bin/boardlab-hello").exists(), "the host's /usr is untouched");
    assert!(!std::path::Path::new("/etc/default/boardlab-hello").exists(), "the host's /etc is untouched");
    let o = std::process::Command::new("dpkg").args(["-s", "boardlab-test-hello"]).output().unwrap();
    assert!(!o.status.success(), "the host's package database is untouched");
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    assert!(!passwd.contains("tester:"), "the host's accounts are untouched");
    // Released, the next claim starts clean.
    ok(&lab.as_user(ALICE, &[json!({"fn": "release", "handle": a["handle"]})]).remove(0));
    let b = claim_jailed(&lab, ALICE);
    let login = Login::new(&dir, ALICE, &b["jail"], "pkg2");
    login.ok(
        "! id tester 2>/dev/null && ! test -e /usr/bin/boardlab-hello && ! dpkg -s boardlab-test-hello 2>/dev/null",
    );
    ok(&lab.as_user(ALICE, &[json!({"fn": "release", "handle": b["handle"]})]).remove(0));
    drop(lab);
    let left = leftovers(&dir, NET.uid_base, 1);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

/// A jail opens flow after flow through the host (a new UDP source port a
/// datagram), as a claimant filling the host's connection tracking would:
/// it is one table for every jail and the host. Beyond its
/// `connections_max` the host drops the jail's new flows; another jail
/// still gets out, and nothing is left behind.
#[test]
fn a_flood_of_flows_takes_only_its_share_of_the_hosts_connection_tracking() {
    let _turn = one_at_a_time();
    const NET: JailNet = JailNet { pool: "10.194.7.0/24", board_net: "172.25.112.0/20", uid_base: 12_500_000 };
    let inet = common::jails::Net::new("ctk", "198.19.7.1/24", &["198.19.7.2/24"], "198.19.7.1");
    let extra = format!("nat_interface = \"{}\"\nconnections_max = 64", inet.host_if);
    let mut lab = jail_lab(2, "rockpro64", &NET, &extra, "");
    let dir = lab.path().to_path_buf();
    lab.start_labd();
    let (a, b) = (claim_jailed(&lab, ALICE), claim_jailed(&lab, BOB));
    let (la, lb) = (Login::new(&dir, ALICE, &a["jail"], "ct-a"), Login::new(&dir, BOB, &b["jail"], "ct-b"));
    let target = common::jails::Listener::in_netns(Some(&inet.ns), "198.19.7.2".parse().unwrap());
    // `n` flows, each its own socket (so its own source port), held open.
    let flows = |login: &Login, n: u32, tag: &str| {
        login.ok(&format!(
            "python3 -c 'import socket,time\nss=[]\nfor i in range({n}):\n s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n \
             s.sendto(b\"{tag}\",(\"198.19.7.2\",{port}))\n ss.append(s)\ntime.sleep(1)'",
            port = target.port
        ))
    };
    let heard = |tag: &str| target.hits().iter().filter(|h| h.ends_with(&format!("\"{tag}\""))).count();
    flows(&la, 500, "a");
    std::thread::sleep(Duration::from_millis(500));
    let from_alice = heard("a");
    assert!((32..=64).contains(&from_alice), "500 flows from alice's jail, {from_alice} got out (cap 64)");
    // Bob's jail has its own share: all of his get out.
    flows(&lb, 20, "b");
    lab.wait_for(Duration::from_secs(5), "bob's 20 flows", || heard("b") == 20);
    assert_eq!(heard("a"), from_alice, "no more of alice's");
    drop(lab);
    let left = leftovers(&dir, NET.uid_base, 2);
    assert!(left.is_empty(), "left behind: {left:#?}");
    drop(inet);
}
