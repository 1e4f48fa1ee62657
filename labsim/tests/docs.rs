//! `labdocs` makes a man page for every command and subcommand of labcli,
//! labd and labsim, and completions for bash, zsh and fish that know every
//! subcommand: run as `make install` runs it, into a temporary directory.

use std::path::Path;
use std::process::Command;

use clap::CommandFactory;

const LABDOCS: &str = env!("CARGO_BIN_EXE_labdocs");

fn labdocs(what: &str, dir: &Path) {
    let o = Command::new(LABDOCS).arg(what).arg(dir).output().unwrap();
    assert!(o.status.success(), "labdocs {what}: {}", String::from_utf8_lossy(&o.stderr));
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every visible subcommand of `cmd`, by name.
fn subcommands(cmd: &clap::Command) -> Vec<String> {
    cmd.get_subcommands().filter(|s| !s.is_hide_set()).map(|s| s.get_name().to_string()).collect()
}

#[test]
fn man_pages_and_completions_cover_every_command() {
    let d = tempfile::tempdir().unwrap();
    labdocs("man", d.path());
    labdocs("completions", d.path());
    let tools = [
        (boardlab::cli::args::Cli::command(), "1"),
        (boardlab::cmdline::Labd::command(), "8"),
        (labsim::cli::Labsim::command(), "1"),
    ];
    for (cmd, section) in &tools {
        let name = cmd.get_name();
        let subs = subcommands(cmd);
        assert!(!subs.is_empty(), "{name} has no subcommands");
        let page = read(&d.path().join(format!("man{section}/{name}.{section}")));
        assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{name}.{section} is not roff");
        for s in &subs {
            // roff writes a hyphen as `\-`.
            let title = format!("{name}-{s}").replace('-', "\\-");
            let sub_page = read(&d.path().join(format!("man{section}/{name}-{s}.{section}")));
            assert!(sub_page.contains(&title), "{name}-{s}.{section} does not name itself");
            assert!(page.contains(&format!("{title}({section})")), "{name}.{section} does not list {s}");
        }
        let completions = [
            read(&d.path().join(format!("bash/{name}.bash"))),
            read(&d.path().join(format!("zsh/_{name}"))),
            read(&d.path().join(format!("fish/{name}.fish"))),
        ];
        for (shell, text) in ["bash", "zsh", "fish"].iter().zip(&completions) {
            for s in &subs {
                assert!(text.contains(s.as_str()), "{shell} completion of {name} lacks {s}");
            }
        }
    }
    // What the general help promises is in labcli's page.
    let page = read(&d.path().join("man1/labcli.1"));
    for needle in ["\\-\\-power", "\\-\\-as", "\\-\\-json", "LABD_SOCKET", "LABD_HANDLE", "Exit status"] {
        assert!(page.contains(needle), "labcli.1 lacks {needle}");
    }
    for s in ["run", "known-hosts", "console", "claim", "release"] {
        assert!(subcommands(&tools[0].0).iter().any(|n| n == s), "labcli lacks {s}");
    }
}
