//! The command lines of `labd` and `labjail` (labcli's is `cli::args`),
//! as clap definitions in the library so that the man pages and shell
//! completions are made from them (`labsim`'s `labdocs`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::DEFAULT_DIR;

/// labd's command line.
#[derive(Parser, Debug)]
#[command(
    name = "labd",
    version,
    about = "The boardlab daemon: the lab's boards (power, consoles, links, jails) and the socket labcli talks to",
    after_help = "\
labd runs as root, in the foreground, logging to stderr (LABD_LOG=debug, or
any tracing filter, for more). SIGTERM stops it gracefully (claims are kept);
SIGUSR1 writes the status dump to its log. Configuration: DIR/lab.toml and
DIR/boards.d/*.toml, described in README.md.

Exit status: 0 stopped cleanly (check: the configuration is valid; selftest:
every board passed), 1 a configuration error or a failure (selftest: a board
failed or was refused), 2 a usage error, 3 (selftest) labd is not running.",
    max_term_width = 100
)]
pub struct Labd {
    /// The configuration directory: lab.toml and boards.d/
    #[arg(long, global = true, value_name = "DIR", default_value = DEFAULT_DIR)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Option<LabdCommand>,
}

/// labd's commands; without one it runs the lab.
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub enum LabdCommand {
    /// Check the configuration: every error with its file and line (exit 1), or exit 0
    Check,
    /// Commission boards (or check them after rewiring) through the running labd: each one's port,
    /// a power cycle read back, power detection, console output and DHCP request on its link, then
    /// back as it was; a line a step. Exit 0 every board passed, 1 one failed or was refused
    /// (claimed), 3 labd is not running
    Selftest {
        /// The boards to test, one after another (default: every board of the lab)
        boards: Vec<String>,
        /// How long each sign of life after power-on is waited for
        #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
        wait: u64,
        /// Print labd's report of each board as a JSON line instead
        #[arg(long)]
        json: bool,
    },
    /// The jails' SSH host certificate authority
    #[command(subcommand)]
    Ca(CaCommand),
    /// Hash the status page's password (one line on stdin) into PATH, its [web] password_file (0600, never over an existing file)
    WebPassword {
        /// The password file to write (absolute)
        path: PathBuf,
    },
}

/// `labd ca ...`.
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub enum CaCommand {
    /// Make the jails' SSH host CA key (mode 0600, never over an existing file) and print the line users trust
    Init {
        /// Where the key goes (default: lab.toml's [jail] host_ca, else /etc/boardlab/host_ca)
        path: Option<PathBuf>,
    },
}

/// labjail's command line. labd starts it; nobody runs it by hand.
#[derive(Parser, Debug)]
#[command(
    name = "labjail",
    version,
    about = "The jail init of boardlab: labd starts it, one per claim; it is not run by hand",
    max_term_width = 100
)]
pub struct Labjail {
    #[command(subcommand)]
    pub command: LabjailCommand,
}

/// labjail's commands.
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub enum LabjailCommand {
    /// Become a claim's jail (its configuration as one JSON line on stdin)
    Start,
    /// Hand a console pty to a jail's relay
    Console {
        /// The jail init's pid
        pid: String,
        /// The jail init's start time (in clock ticks since boot)
        start: String,
        /// The pty to pass in
        pty: String,
    },
    /// Open a file of a jail as the jail's root and pass it to labd on
    /// stdout (a Unix socket): an image for `labcli sd flash`
    Open {
        /// The jail init's pid
        pid: String,
        /// The jail init's start time (in clock ticks since boot)
        start: String,
        /// The file's path in the jail
        path: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labd_command_lines() {
        let p = Labd::try_parse_from(["labd"]).unwrap();
        assert_eq!((p.config, p.command), (PathBuf::from(DEFAULT_DIR), None));
        let p = Labd::try_parse_from(["labd", "ca", "init", "/k", "--config", "/x"]).unwrap();
        assert_eq!(p.command, Some(LabdCommand::Ca(CaCommand::Init { path: Some(PathBuf::from("/k")) })));
        let p = Labd::try_parse_from(["labd", "ca", "init"]).unwrap();
        assert_eq!(p.command, Some(LabdCommand::Ca(CaCommand::Init { path: None })));
        for argv in [&["labd", "check", "--config", "/x"][..], &["labd", "--config", "/x", "check"]] {
            let p = Labd::try_parse_from(argv).unwrap();
            assert_eq!((p.config, p.command), (PathBuf::from("/x"), Some(LabdCommand::Check)));
        }
        let p = Labd::try_parse_from(["labd", "selftest", "b1", "b2", "--wait", "5"]).unwrap();
        let want = LabdCommand::Selftest { boards: vec!["b1".into(), "b2".into()], wait: 5, json: false };
        assert_eq!(p.command, Some(want));
        let p = Labd::try_parse_from(["labd", "selftest", "--json"]).unwrap();
        assert_eq!(p.command, Some(LabdCommand::Selftest { boards: vec![], wait: 30, json: true }));
        for argv in [
            &["labd", "--config"][..],
            &["labd", "frob"],
            &["labd", "check", "check"],
            &["labd", "selftest", "--wait", "0"],
            &["labd", "selftest", "--wait", "x"],
        ] {
            assert_eq!(Labd::try_parse_from(argv).unwrap_err().exit_code(), 2, "{argv:?}");
        }
        for argv in [&["labd", "--help"][..], &["labd", "--version"], &["labd", "check", "-h"]] {
            assert_eq!(Labd::try_parse_from(argv).unwrap_err().exit_code(), 0, "{argv:?}");
        }
    }

    #[test]
    fn labjail_command_lines() {
        assert_eq!(Labjail::try_parse_from(["labjail", "start"]).unwrap().command, LabjailCommand::Start);
        let c = Labjail::try_parse_from(["labjail", "console", "1", "2", "/dev/pts/3"]).unwrap().command;
        assert_eq!(c, LabjailCommand::Console { pid: "1".into(), start: "2".into(), pty: "/dev/pts/3".into() });
        assert_eq!(Labjail::try_parse_from(["labjail"]).unwrap_err().exit_code(), 2);
        assert_eq!(Labjail::try_parse_from(["labjail", "--version"]).unwrap_err().exit_code(), 0);
    }
}
