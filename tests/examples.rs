//! The shipped example configuration (`examples/lab.toml` and `boards.d/`)
//! must load: the README points operators at it, so a key that `config.rs`
//! stops accepting has to break a test, not an operator's first start.

use std::path::{Path, PathBuf};

use boardlab::config::{Config, ConsoleSource, Network};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Lays the examples out as labd expects them: DIR/lab.toml, DIR/boards.d/.
fn example_dir() -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(repo().join("examples/lab.toml"), dir.path().join("lab.toml")).expect("copy examples/lab.toml");
    std::fs::create_dir(dir.path().join("boards.d")).expect("mkdir boards.d");
    let mut boards = Vec::new();
    for entry in std::fs::read_dir(repo().join("boards.d")).expect("read boards.d") {
        let path = entry.expect("boards.d entry").path();
        if path.extension().is_some_and(|x| x == "toml") {
            let name = path.file_name().expect("file name").to_owned();
            std::fs::copy(&path, dir.path().join("boards.d").join(&name)).expect("copy board file");
            boards.push(path);
        }
    }
    boards.sort();
    (dir, boards)
}

fn load(dir: &Path) -> Config {
    match Config::load(dir) {
        Ok(c) => c,
        Err(e) => panic!("the example configuration does not load:\n{e}"),
    }
}

#[test]
fn examples_load() {
    let (dir, files) = example_dir();
    assert!(!files.is_empty(), "boards.d/ has no example boards");
    let config = load(dir.path());
    assert_eq!(config.boards.len(), files.len(), "every example board file is one board");
    assert!(config.switches.contains_key("poe1"));
    assert!(config.daemon.trusted_gateways.contains("lab"));
    assert_eq!(config.web.map(|w| w.listen.to_string()).as_deref(), Some("127.0.0.1:7480"));
    let h = &config.health["rockpro64"];
    assert_eq!((h.failures, h.dhcp, h.every.map(|e| e.as_secs())), (3, true, Some(6 * 3600)));
}

/// The README describes both ways of naming a console and a network link;
/// the examples show each of them at least once.
#[test]
fn examples_cover_every_form() {
    let (dir, _) = example_dir();
    let config = load(dir.path());
    let classes = config.classes();
    assert!(classes.get("rockpro64").is_some_and(|b| b.len() >= 2), "{classes:?}");
    assert!(classes.len() >= 2, "more than one class: {classes:?}");
    let b = &config.boards;
    assert!(b.iter().any(|b| matches!(b.console.as_ref().map(|c| &c.source), Some(ConsoleSource::Match(_)))));
    assert!(b.iter().any(|b| matches!(b.console.as_ref().map(|c| &c.source), Some(ConsoleSource::Path(_)))));
    assert!(b.iter().any(|b| matches!(b.network, Some(Network::Vlan { .. }))));
    assert!(b.iter().any(|b| matches!(b.network, Some(Network::Interface(_)))));
    assert!(b.iter().any(|b| b.power_on_claim) && b.iter().any(|b| !b.power_on_claim));
    assert!(b.iter().any(|b| b.storage.is_some()), "a board with a microSD card");
    let rock = b.iter().find(|b| b.name == "rockpro64-1").expect("rockpro64-1");
    assert_eq!(rock.console.as_ref().map(|c| c.baud), Some(1_500_000));
}
