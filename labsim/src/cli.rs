//! labsim's command line, as a clap definition (the man page and shell
//! completions are made from it by `labdocs`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// labsim's command line.
#[derive(Parser, Debug)]
#[command(
    name = "labsim",
    version,
    about = "A simulated board lab on this machine, for boardlab's demo and tests",
    long_about = "A simulated board lab on this machine, for boardlab's demo and tests: a real snmpd as \
                  the PoE switch, ptys as serial adapters, network namespaces as board links, board \
                  processes that netboot. Runs as root.",
    after_help = "Logs go to stderr (LABSIM_LOG=debug for more). Exit status: 0 done, 1 failed, 2 usage error.",
    max_term_width = 100
)]
pub struct Labsim {
    #[command(subcommand)]
    pub command: SimCommand,
}

/// The lab's directory.
#[derive(Args, Debug, Clone)]
pub struct Dir {
    /// The lab's directory (up: an empty or new one; it keeps what the lab is made of)
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

/// `labsim switch stop|start`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchAction {
    Stop,
    Start,
}

/// labsim's commands.
#[derive(Subcommand, Debug)]
pub enum SimCommand {
    /// Bring a lab up in DIR and write labd's configuration there
    Up {
        #[command(flatten)]
        dir: Dir,
        /// How many boards
        #[arg(long, value_name = "N")]
        boards: u32,
        /// Their classes, used in turn [default: rockpro64]
        #[arg(long, value_name = "a,b", value_delimiter = ',')]
        classes: Vec<String>,
        /// No network namespace and link per board
        #[arg(long)]
        no_net: bool,
        /// No pty (serial console) per board
        #[arg(long)]
        no_console: bool,
        /// A simulated microSD card and mux per board (labd's `sim` mux; boards boot from the card)
        #[arg(long)]
        sd: bool,
        /// One host of a lab on etcd: this host's name (boards are named HOST-CLASS-K)
        #[arg(long, value_name = "NAME")]
        host: Option<String>,
        /// etcd's client URLs (with --host)
        #[arg(long, value_name = "URL,...", value_delimiter = ',', requires = "host")]
        etcd: Vec<String>,
        /// Where the lab's CA is kept, shared by its hosts [default: DIR/peer-ca]
        #[arg(long, value_name = "DIR", requires = "host")]
        ca: Option<PathBuf>,
        /// The switch takes writes over SNMPv3 only (authPriv, SHA and AES; v1/v2c read-only),
        /// and labd is configured for it
        #[arg(long)]
        snmpv3: bool,
    },
    /// Take the lab in DIR down: everything up made, and nothing else
    Down(Dir),
    /// A board's port as the switch has it: on or off
    Power {
        #[command(flatten)]
        dir: Dir,
        /// The board
        board: String,
    },
    /// Stop or start the switch's SNMP agent
    Switch {
        #[command(flatten)]
        dir: Dir,
        /// stop or start
        action: SwitchAction,
    },
    /// Plug a board's serial adapter back in
    Plug {
        #[command(flatten)]
        dir: Dir,
        /// The board
        board: String,
    },
    /// Unplug a board's serial adapter
    Unplug {
        #[command(flatten)]
        dir: Dir,
        /// The board
        board: String,
    },
    /// (internal) snmpd's pass_persist helper
    #[command(hide = true)]
    PassPersist(Dir),
    /// (internal) one board's process
    #[command(hide = true)]
    Board {
        #[command(flatten)]
        dir: Dir,
        /// The board's name
        #[arg(long, value_name = "NAME")]
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        let up = Labsim::try_parse_from(["labsim", "up", "--dir", "/d", "--boards", "2", "--classes", "a,b"]).unwrap();
        match up.command {
            SimCommand::Up { boards, classes, host, .. } => {
                assert_eq!((boards, classes, host), (2, vec!["a".to_string(), "b".to_string()], None));
            }
            other => panic!("{other:?}"),
        }
        for ok in [&["labsim", "--help"][..], &["labsim", "up", "--help"], &["labsim", "--version"]] {
            assert_eq!(Labsim::try_parse_from(ok).unwrap_err().exit_code(), 0, "{ok:?}");
        }
        for bad in
            [&["labsim", "up", "--boards", "2"][..], &["labsim", "up", "--dir", "/d", "--etcd", "u"], &["labsim"]]
        {
            assert_eq!(Labsim::try_parse_from(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }
}
