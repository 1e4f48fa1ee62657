//! microSD cards end to end through labd (issue 13): labsim boards with a
//! simulated mux and card (`labsim up --sd`), a claimant's jail that
//! writes a FAT image to /dev/sdcard, a board that boots from it, `sd
//! flash` with a bmap (only the mapped blocks written, counted, and
//! verified), the refusals (the board and the host never at once,
//! another user's card, paths out of the jail as a hostile root inside
//! sees them), and a release that leaves the card off and nowhere.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::jails::{jail_lab_with, JailNet, Login};
use common::*;
use serde_json::{json, Value};

const NET: JailNet = JailNet { pool: "10.192.13.0/24", board_net: "172.23.0.0/20", uid_base: 10_100_000 };
const BS: u64 = 4096;

fn log_of(lab: &Lab, handle: &str) -> String {
    let r = lab.req(json!({"fn": "console_log", "handle": handle}));
    r["result"]["log"].as_str().unwrap_or("").to_string()
}

/// `labcli --json ...` in the jail: (exit code, JSON on stdout, stderr).
fn cli(login: &Login, args: &str) -> (i32, Value, String) {
    let o = login.run(&format!("labcli --json {args}"));
    let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (o.status.code().unwrap_or(-1), v, String::from_utf8_lossy(&o.stderr).to_string())
}

#[track_caller]
fn cli_ok(login: &Login, args: &str) -> Value {
    let (code, v, err) = cli(login, args);
    assert_eq!(code, 0, "labcli {args}: {v} {err}");
    v
}

#[track_caller]
fn refused(login: &Login, args: &str, want: &str) -> String {
    let (code, v, err) = cli(login, args);
    assert_eq!(code, 1, "labcli {args} should be refused: {v} {err}");
    let got = v["error"]["code"].as_str().unwrap_or("");
    assert!(want.split('|').any(|w| w == got), "labcli {args}: {v}, wanted {want}");
    v["error"]["message"].as_str().unwrap_or("").to_string()
}

fn loops_of(img: &Path) -> String {
    let o = Command::new("losetup").arg("-j").arg(img).output().unwrap();
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn a_card_from_the_jail_to_the_board_and_back_and_nothing_left() {
    let _turn = common::jails::one_at_a_time();
    let mut lab = jail_lab_with(2, "rockpro64", &["--sd"], &NET, "", "");
    let dir = lab.path().to_path_buf();
    lab.start_labd();

    let r = lab.as_user(ALICE, &[json!({"fn": "claim", "class": "rockpro64"})]).remove(0);
    let claim = ok(&r).clone();
    let (handle, board) = (claim["handle"].as_str().unwrap().to_string(), claim["board"].as_str().unwrap().to_string());
    let r = lab.as_user(BOB, &[json!({"fn": "claim", "class": "rockpro64"})]).remove(0);
    let bob_claim = ok(&r).clone();
    let bob_handle = bob_claim["handle"].as_str().unwrap().to_string();
    let bob_board = bob_claim["board"].as_str().unwrap().to_string();
    let login = Login::new(&dir, ALICE, &claim["jail"], "a");
    let bob = Login::new(&dir, BOB, &bob_claim["jail"], "b");
    let img = dir.join(format!("sd/{board}.img"));
    let mux = dir.join(format!("sd/{board}.mux"));
    let mux_side = || std::fs::read_to_string(&mux).unwrap().trim().to_string();
    assert_eq!(mux_side(), "off", "labd put the card in a known state");
    assert_eq!(cli_ok(&login, "sd status")["side"], "off");

    // host: the card is /dev/sdcard in the jail, the jail's root's alone.
    let v = cli_ok(&login, "sd host");
    assert_eq!((v["side"].as_str(), v["device"].as_str()), (Some("host"), Some("/dev/sdcard")), "{v}");
    assert_eq!(mux_side(), "host");
    assert_eq!(login.ok("stat -L -c '%F %a %u' /dev/sdcard").trim(), "block special file 600 0");
    assert!(bob.run("test -e /dev/sdcard").status.code() == Some(1), "not in another jail");
    assert!(!loops_of(&img).is_empty(), "the card reader (a loop device) is there");
    // Operators see where each card is in the dump.
    let d = lab.req(json!({"fn": "dump"}));
    let sd_of = |b: &str| ok(&d)["boards"].as_array().unwrap().iter().find(|x| x["board"] == b).unwrap()["sd"].clone();
    assert_eq!((sd_of(&board)["side"].as_str(), sd_of(&board)["mux"].as_str()), (Some("host"), Some("sim")), "{d}");
    assert_eq!(sd_of(&board)["device"], "/dev/sdcard");
    assert_eq!(sd_of(&bob_board)["side"], "off");

    // Never both: no power-on while the host has the card.
    let m = refused(&login, "power-on", "busy");
    assert!(m.contains("on the host side"), "{m}");
    // Nor is the card taken from a jail process that holds it open.
    login.ok("nohup sleep 60 < /dev/sdcard > /dev/null 2>&1 & echo $! > /root/holder");
    let m = refused(&login, "sd board", "busy");
    assert!(m.contains("still open"), "{m}");
    assert_eq!((mux_side().as_str(), login.run("test -b /dev/sdcard").status.code()), ("host", Some(0)), "unchanged");
    login.ok("kill $(cat /root/holder); sleep 0.5");

    // The jail writes a FAT image with boot.scr (sfdisk, mkfs.vfat, mtools).
    login.ok("set -e; cd /root; rm -f fat.img; truncate -s 40M fat.img; \
         printf 'label: dos\\nlabel-id: 0x5dca4d00\\nstart=2048, size=65536, type=c, bootable\\n' | sfdisk -q fat.img; \
         truncate -s 32M part.img; mkfs.vfat -n BOOT part.img >/dev/null; \
         printf 'echo hello-from-the-card\\nbooti ${kernel_addr_r} - ${fdt_addr_r}\\n' > boot.scr; \
         mcopy -i part.img boot.scr ::boot.scr; \
         dd if=part.img of=fat.img bs=1M seek=1 conv=notrunc status=none; \
         dd if=fat.img of=/dev/sdcard bs=1M conv=fsync status=none");
    let v = cli_ok(&login, "sd board");
    assert_eq!((v["side"].as_str(), &v["device"]), (Some("board"), &Value::Null), "{v}");
    assert_eq!(mux_side(), "board");
    assert_eq!(login.run("test -e /dev/sdcard").status.code(), Some(1), "the card left the jail");
    assert!(loops_of(&img).is_empty(), "the card reader is gone: {}", loops_of(&img));

    // The board boots from the card: partition table and boot.scr.
    cli_ok(&login, "power-on");
    lab.wait_for(Duration::from_secs(20), "the board to boot from its card", || {
        log_of(&lab, &handle).contains("hello-from-the-card")
    });
    let log = log_of(&lab, &handle);
    assert!(log.contains("Partition Map for MMC device 0  --   Partition Type: DOS"), "{log}");
    assert!(log.contains("  1\t2048      \t65536     \t5dca4d00-01\t0c Boot"), "{log}");
    assert!(log.contains("Found U-Boot script /boot.scr"), "{log}");
    assert!(log.contains("booti ${kernel_addr_r} - ${fdt_addr_r}"), "{log}");

    // Never both: no host side while the board is powered, unless asked.
    let m = refused(&login, "sd host", "busy");
    assert!(m.contains("is powered") && m.contains("--power-off"), "{m}");
    assert_eq!(mux_side(), "board", "a refusal changes nothing");
    let v = cli_ok(&login, "sd host --power-off");
    assert_eq!(v["side"], "host");
    assert_eq!(lab.board(&board)["power"], "off");

    // Another user's card: not_claimed from outside, handle_mismatch in a jail.
    let r = lab.as_user(ALICE, &[json!({"fn": "sd", "handle": bob_handle, "action": "host"})]).remove(0);
    assert_eq!(code(&r), "not_claimed", "{r}");
    refused(&login, &format!("sd {bob_handle} status"), "handle_mismatch");
    assert_eq!(std::fs::read_to_string(dir.join(format!("sd/{bob_board}.mux"))).unwrap().trim(), "off");

    // A hostile root in the jail: paths out of it, devices, FIFOs, a
    // gigantic sparse file, another jail's files.
    bob.ok("echo bob-secret > /root/secret");
    login.ok("cd /root; ln -sf /.host-etc/shadow evil; ln -sf ../../../../../../.host-etc/shadow evil2; \
         rm -f fifo; mkfifo fifo; truncate -s 4T huge; ln -sf /proc/1/root/etc/hostname magic");
    for (path, want) in [
        ("/.host-etc/shadow", "permission_denied"),
        ("/root/evil", "permission_denied"),
        ("/root/evil2", "permission_denied"),
        ("/root/../etc/hostname", "bad_request"),
        ("/dev/null", "bad_request"),
        ("/root/fifo", "bad_request"),
        ("/root/huge", "bad_request"),
        // A /proc magic link: refused by the resolution, or by /proc.
        ("/root/magic", "bad_request|permission_denied"),
        ("/root", "bad_request"),
        (&format!("{}/jails/{bob_board}/root/secret", dir.display()), "bad_request"),
        (&format!("/proc/1/root{}/jails/{bob_board}/root/secret", dir.display()), "bad_request|permission_denied"),
    ] {
        let m = refused(&login, &format!("sd flash {path}"), want);
        assert!(!m.contains("bob-secret"), "{m}");
    }
    let m = refused(&login, "sd flash /root/huge", "bad_request");
    assert!(m.contains("does not fit"), "{m}");
    let v = cli_ok(&login, "sd status");
    assert_eq!((v["side"].as_str(), v["device"].as_str()), (Some("host"), Some("/dev/sdcard")), "unchanged: {v}");

    // flash with a bmap: the card painted first, so blocks not written show.
    login.ok("set -e; cd /root; rm -f img img.bmap img.xz; truncate -s 64M img; \
         head -c 1M /dev/urandom | dd of=img bs=1M seek=0 conv=notrunc status=none; \
         head -c 300K /dev/urandom | dd of=img bs=4K seek=4000 conv=notrunc status=none; \
         head -c 5K /dev/urandom | dd of=img bs=1K seek=60000 conv=notrunc status=none; \
         bmaptool -q create -o img.bmap img; \
         tr '\\000' '\\252' < /dev/zero | dd of=/dev/sdcard bs=1M count=64 iflag=fullblock conv=fsync status=none");
    let bmap = login.ok("cat /root/img.bmap");
    let mapped: u64 = bmap
        .rsplit("<MappedBlocksCount>")
        .next()
        .and_then(|s| s.split('<').next())
        .map(|s| s.trim().parse().unwrap())
        .unwrap();
    assert!((300..400).contains(&mapped), "{mapped} mapped blocks");
    let v = cli_ok(&login, "sd flash /root/img");
    let f = &v["flashed"];
    assert_eq!(v["side"], "board", "a flash ends on the board's side: {v}");
    assert_eq!(
        (f["bmap"].as_bool(), f["blocks"].as_u64(), f["written"].as_u64()),
        (Some(true), Some(mapped), Some(mapped * BS)),
        "{v}"
    );
    assert_eq!(f["image_bytes"], 64 << 20);
    // Read back in the jail: mapped blocks are the image's, others untouched.
    cli_ok(&login, "sd host");
    let same = login.ok("cd /root; for off in 0 255 4000 4074 15000; do \
           a=$(dd if=img bs=4K skip=$off count=1 status=none | sha256sum); \
           b=$(dd if=/dev/sdcard bs=4K skip=$off count=1 status=none | sha256sum); \
           [ \"$a\" = \"$b\" ] && echo same || echo differs; done");
    assert_eq!(same.split_whitespace().collect::<Vec<_>>(), ["same", "same", "same", "same", "same"]);
    let hole = login.ok("dd if=/dev/sdcard bs=4K skip=10000 count=1 status=none | od -An -v -tx1 | sort -u");
    assert_eq!(hole.trim(), "aa aa aa aa aa aa aa aa aa aa aa aa aa aa aa aa", "an unmapped block was not written");
    // The same image packed with xz, the bmap found beside the unpacked name.
    login.ok("cd /root && xz -T1 -0 -k img");
    let v = cli_ok(&login, "sd flash /root/img.xz --power-off");
    assert_eq!((v["flashed"]["packing"].as_str(), v["flashed"]["blocks"].as_u64()), (Some("xz"), Some(mapped)), "{v}");

    // Release: the card off, in no jail, no loop device, no node.
    cli_ok(&login, "sd host");
    let r = lab.as_user(ALICE, &[json!({"fn": "release", "handle": handle})]).remove(0);
    ok(&r);
    assert_eq!(mux_side(), "off");
    assert!(loops_of(&img).is_empty(), "loop device left behind: {}", loops_of(&img));
    assert!(!dir.join(format!("jails/.sd/{board}/sdcard")).exists(), "node left behind");
    assert_eq!(bob.run("test -e /dev/sdcard").status.code(), Some(1));
    assert_eq!(bob.run("ls /dev/.sd").stdout, b"", "bob's card directory is empty");
    // The next claimant finds the card off.
    let r = lab.as_user(ALICE, &[json!({"fn": "claim", "class": "rockpro64"})]).remove(0);
    let again = ok(&r).clone();
    let r = lab.as_user(ALICE, &[json!({"fn": "sd", "handle": again["handle"], "action": "status"})]).remove(0);
    assert_eq!(ok(&r)["side"], "off", "{r}");
    assert!(ok(&r)["flashed"].is_null(), "the last claim's flash is not shown: {r}");
}

#[test]
fn without_jails_a_card_switches_is_wiped_and_flash_says_why_not() {
    let mut lab =
        Lab::create(1, "rockpro64", &["--sd", "--no-net"], |t| format!("{t}\n[storage]\nwipe_on_release = true\n"));
    let dir = lab.path().to_path_buf();
    let board = "rockpro64-1".to_string();
    let (img, mux) = (dir.join(format!("sd/{board}.img")), dir.join(format!("sd/{board}.mux")));
    // What a labd killed with the card on the host side leaves: the mux
    // on host, a loop device. labd's start puts the card in a known state.
    std::fs::write(&mux, "host\n").unwrap();
    let o = Command::new("losetup").args(["--find", "--show"]).arg(&img).output().unwrap();
    assert!(o.status.success());
    lab.start_labd();
    lab.wait_for(Duration::from_secs(10), "the card off at start", || {
        std::fs::read_to_string(&mux).unwrap().trim() == "off" && loops_of(&img).is_empty()
    });
    let r = lab.as_user(ALICE, &[json!({"fn": "claim", "class": "rockpro64", "power": true})]).remove(0);
    let claim = ok(&r).clone();
    let handle = claim["handle"].clone();
    assert_eq!(claim["board"], board.as_str());
    let sd = |action: &str, extra: Value| {
        let mut req = json!({"fn": "sd", "handle": handle, "action": action});
        if let (Some(m), Some(e)) = (req.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        lab.as_user(ALICE, &[req]).remove(0)
    };
    let r = sd("host", json!({}));
    assert_eq!(code(&r), "busy", "{r}");
    let r = sd("host", json!({"power_off": true}));
    assert_eq!((ok(&r)["side"].as_str(), &ok(&r)["device"]), (Some("host"), &Value::Null), "{r}");
    assert!(!loops_of(&dir.join(format!("sd/{board}.img"))).is_empty());
    let r = sd("off", json!({}));
    assert_eq!(ok(&r)["side"], "off");
    // Reinit puts a card on the host side off, its loop device with it.
    let r = sd("host", json!({}));
    assert_eq!(ok(&r)["side"], "host", "{r}");
    ok(&lab.as_user(ALICE, &[json!({"fn": "reinit", "handle": handle})]).remove(0));
    assert_eq!(std::fs::read_to_string(&mux).unwrap().trim(), "off", "reinit took the card off");
    assert!(loops_of(&img).is_empty());
    let r = sd("status", json!({}));
    assert_eq!(ok(&r)["side"], "off", "{r}");
    let r = sd("flash", json!({"path": "/root/x.img"}));
    assert_eq!(code(&r), "bad_request", "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("no jails"), "{r}");
    for bad in [json!({"fn": "sd", "handle": handle, "action": "eject"}), json!({"fn": "sd", "handle": handle})] {
        let r = lab.as_user(ALICE, &[bad]).remove(0);
        assert_eq!(code(&r), "bad_request", "{r}");
    }
    // wipe_on_release: what the claim left on the card is gone after it.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
        f.write_all_at(b"left-by-alice", 4096 * 1000).unwrap();
        f.sync_all().unwrap();
    }
    ok(&lab.as_user(ALICE, &[json!({"fn": "release", "handle": handle})]).remove(0));
    let mut buf = [1u8; 13];
    std::os::unix::fs::FileExt::read_exact_at(&std::fs::File::open(&img).unwrap(), &mut buf, 4096 * 1000).unwrap();
    assert_eq!(buf, [0u8; 13], "the card was wiped at release");
    assert_eq!(std::fs::read_to_string(&mux).unwrap().trim(), "off");
    assert!(loops_of(&img).is_empty());
    // Host side, then labd stops: nothing of the card outlives it.
    let r = lab.as_user(ALICE, &[json!({"fn": "claim", "class": "rockpro64"})]).remove(0);
    let h = ok(&r)["handle"].clone();
    ok(&lab.as_user(ALICE, &[json!({"fn": "sd", "handle": h, "action": "host"})]).remove(0));
    assert!(lab.stop_labd().success());
    assert!(loops_of(&img).is_empty(), "labd's stop took the card off the host");
}
