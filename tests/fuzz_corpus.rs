//! Replays every file of `fuzz/corpus/` through the three fuzzed entry
//! points, with the fuzz targets' own property checks (`fuzz/harness.rs`).
//! Deterministic and fast (no fuzzer, no nightly): a corpus file that once
//! crashed a target stays a regression test on every `cargo test`.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "{}: only {} files", dir.display(), files.len());
    files
}

/// Runs `f` on every file of every corpus, naming the file on failure.
fn replay(target: &str, f: fn(&[u8])) {
    let mut n = 0;
    for t in ["request", "forced_command", "config"] {
        for file in corpus(t) {
            let data = std::fs::read(&file).unwrap();
            let r = std::panic::catch_unwind(|| f(&data));
            assert!(r.is_ok(), "{target} failed on {}", file.display());
            n += 1;
        }
    }
    eprintln!("{target}: {n} corpus files replayed");
}

#[test]
fn request_corpus() {
    replay("request", harness::request);
}

#[test]
fn forced_command_corpus() {
    replay("forced_command", harness::forced_command);
}

#[test]
fn config_corpus() {
    replay("config", harness::config);
}

/// The seeds that must be accepted still are: a harness that refused
/// everything would pass the replay above and prove nothing.
#[test]
fn valid_seeds_are_accepted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let read = |t: &str, n: &str| String::from_utf8(std::fs::read(root.join(t).join(n)).unwrap()).unwrap();
    for f in ["claim", "renew", "status", "maintenance", "console_log"] {
        boardlab::protocol::parse_request(&read("request", &format!("seed-{f}"))).unwrap();
    }
    for f in ["claim", "renew", "maintenance", "log"] {
        let line = read("forced_command", &format!("seed-{f}"));
        assert!(matches!(boardlab::cli::plan(&[], Some(&line)), Ok(boardlab::cli::Plan::Single { .. })));
    }
    let t = read("config", "seed-valid-two");
    let parts: Vec<&str> = t.split(harness::SEP).collect();
    let boards: Vec<(PathBuf, String)> =
        parts[1..].iter().enumerate().map(|(i, b)| (PathBuf::from(format!("/b{i}.toml")), b.to_string())).collect();
    let cfg = boardlab::config::Config::from_texts(Path::new("/etc/boardlab"), parts[0], &boards, Vec::new()).unwrap();
    assert_eq!(cfg.boards.len(), 2);
}
