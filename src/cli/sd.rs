//! `labcli sd [HANDLE] host|board|off|status` and `labcli sd [HANDLE]
//! flash PATH`: the words to a request, the reply for humans, and a
//! flash's progress on stderr (a second connection asks `sd status`
//! every second while the flash runs, as `claim --wait` asks its place).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::client::Client;
use super::usage::UsageError;
use crate::protocol::{Call, SdAction, SdArgs};

fn action(word: &str) -> Option<SdAction> {
    Some(match word {
        "host" => SdAction::Host,
        "board" => SdAction::Board,
        "off" => SdAction::Off,
        "status" => SdAction::Status,
        "flash" => SdAction::Flash,
        _ => return None,
    })
}

/// The words after `sd`: `[HANDLE] ACTION [PATH]`. A relative PATH is
/// made absolute from the current directory (a path in the jail, where
/// labcli runs inside one).
pub fn call(words: &[String], power_off: bool) -> Result<Call, UsageError> {
    let usage = |m: &str| {
        UsageError(format!("{m}; usage: sd [HANDLE|BOARD] host|board|off|status, sd [HANDLE|BOARD] flash PATH"))
    };
    let (handle, rest) = match words.first().map(String::as_str).and_then(action) {
        Some(_) => (None, words),
        None => match words.split_first() {
            Some((h, rest)) if !h.is_empty() => (Some(h.clone()), rest),
            _ => return Err(usage("sd needs what to do")),
        },
    };
    let Some((verb, rest)) = rest.split_first() else { return Err(usage("sd needs what to do")) };
    let Some(act) = action(verb) else { return Err(usage(&format!("{verb:?} is not something sd does"))) };
    let path = match (act, rest) {
        (SdAction::Flash, [p]) if !p.is_empty() => {
            let p = PathBuf::from(p);
            let abs = if p.is_absolute() {
                p
            } else {
                std::env::current_dir().map_err(|e| UsageError(format!("the current directory: {e}")))?.join(p)
            };
            Some(abs.to_str().ok_or_else(|| usage("the image path must be UTF-8"))?.to_string())
        }
        (SdAction::Flash, _) => return Err(usage("sd flash needs one image PATH")),
        (_, []) => None,
        (_, _) => return Err(usage(&format!("sd {} takes nothing after it", act.as_str()))),
    };
    if power_off && !matches!(act, SdAction::Host | SdAction::Flash) {
        return Err(UsageError(format!("--power-off is for sd host and sd flash, not sd {}", act.as_str())));
    }
    Ok(Call::Sd(SdArgs { handle, action: act, path, power_off }))
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}

/// `sd`'s reply for humans.
pub fn render(r: &Value) -> Option<String> {
    let board = r["board"].as_str()?;
    let side = r["side"].as_str()?;
    let mut out = format!("{board}: card {side}");
    if let Some(d) = r["device"].as_str() {
        out.push_str(&format!(", {d} in the jail"));
    }
    if let Some(b) = r["busy"].as_str() {
        out.push_str(&format!(" (being {b})"));
    }
    out.push('\n');
    let f = &r["flashed"];
    if f.is_object() {
        out.push_str(&format!(
            "flashed {} ({}{}): {} written in {} blocks of {} in {:.1} s, {:.1} MB/s, verified (sha256 {})\n",
            f["path"].as_str().unwrap_or("?"),
            f["packing"].as_str().unwrap_or("?"),
            if f["bmap"].as_bool() == Some(true) { ", bmap" } else { "" },
            mib(f["written"].as_u64().unwrap_or(0)),
            f["blocks"].as_u64().unwrap_or(0),
            f["block_size"].as_u64().unwrap_or(0),
            f["seconds"].as_f64().unwrap_or(0.0),
            f["mb_per_s"].as_f64().unwrap_or(0.0),
            f["sha256"].as_str().unwrap_or("?"),
        ));
    }
    if let Some(e) = r["error"].as_str() {
        out.push_str(&format!("last error: {e}\n"));
    }
    Some(out)
}

/// Reports a flash's progress until dropped.
pub struct FlashProgress {
    stop: Arc<AtomicBool>,
}

impl FlashProgress {
    /// For `call` when it is a flash.
    pub fn start(call: &Call, socket: PathBuf, as_user: Option<String>) -> Option<FlashProgress> {
        let Call::Sd(a) = call else { return None };
        if a.action != SdAction::Flash {
            return None;
        }
        let status =
            Call::Sd(SdArgs { handle: a.handle.clone(), action: SdAction::Status, path: None, power_off: false });
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let _ = std::thread::Builder::new().name("flash-progress".into()).spawn(move || {
            let mut id = 0;
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                id += 1;
                let line = super::request::request_line(id, &status, as_user.as_deref());
                let Some(reply) = Client::connect(&socket).ok().and_then(|mut c| c.call(&line).ok()) else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&reply) else { continue };
                let p = &v["result"]["progress"];
                if s.load(Ordering::Relaxed) || !p.is_object() {
                    continue;
                }
                let (done, total) = (p["done"].as_u64().unwrap_or(0), p["total"].as_u64().unwrap_or(0));
                eprintln!("[sd flash: {} {} of {}]", p["phase"].as_str().unwrap_or("?"), mib(done), mib(total));
            }
        });
        Some(FlashProgress { stop })
    }
}

impl Drop for FlashProgress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn words_to_calls() {
        let c = call(&w("host"), false).unwrap();
        assert_eq!(c, Call::Sd(SdArgs { handle: None, action: SdAction::Host, path: None, power_off: false }));
        let c = call(&w("rp-1 flash /root/a.img"), true).unwrap();
        assert_eq!(
            c,
            Call::Sd(SdArgs {
                handle: Some("rp-1".into()),
                action: SdAction::Flash,
                path: Some("/root/a.img".into()),
                power_off: true
            })
        );
        let Call::Sd(a) = call(&w("flash a.img"), false).unwrap() else { panic!() };
        assert!(a.path.unwrap().ends_with("/a.img"));
        for bad in ["", "rp-1", "rp-1 frob", "flash", "status x", "rp-1 host extra", "flash a b"] {
            assert!(call(&w(bad), false).is_err(), "{bad:?}");
        }
        assert!(call(&w("board"), true).is_err());
    }

    #[test]
    fn replies_for_humans() {
        let v = serde_json::json!({"board": "rp-1", "mux": "sim", "side": "host", "device": "/dev/sdcard"});
        assert_eq!(render(&v).unwrap(), "rp-1: card host, /dev/sdcard in the jail\n");
        let v = serde_json::json!({"board": "rp-1", "mux": "sim", "side": "board", "device": null,
            "flashed": {"path": "/root/a.img", "packing": "xz", "bmap": true, "written": 1048576, "blocks": 256,
                        "block_size": 4096, "seconds": 0.5, "mb_per_s": 2.1, "sha256": "ab"}});
        assert!(render(&v).unwrap().contains("flashed /root/a.img (xz, bmap): 1.0 MiB written in 256 blocks of 4096"));
    }
}
