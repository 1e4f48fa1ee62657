//! Command line → what to do: labcli's commands as one clap definition.
//!
//! The same parser serves the process argv (trusted: written by the user or
//! by the administrator in `authorized_keys`) and the words that come from an
//! ssh client (`$SSH_ORIGINAL_COMMAND`, stdin lines). The second kind may not
//! choose the socket or the identity, nor run a command on the lab host, see
//! [`Origin`].
//!
//! Everything here is a pure function over strings: no I/O, no panics.
//! Usage errors are worded by [`super::usage`].

use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use super::help::{ABOUT, AFTER_HELP};
use super::usage::{self, UsageError};
pub use super::values::{compile_regex, dur_secs, REGEX_SIZE_LIMIT};
use super::values::{dur, history_limit, non_empty, reason, regex_text, tail_lines};
use crate::protocol::{Call, HistoryQuery};

/// `--wait` with no DUR: wait this many seconds (365 days), which is as good
/// as forever for a lab and still an ordinary number for the daemon.
pub const WAIT_FOREVER_SECS: u64 = 365 * 24 * 3600;

/// Where the words came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The process arguments.
    Argv,
    /// `$SSH_ORIGINAL_COMMAND` or a stdin line: `--socket`, `--as` and
    /// `run` are refused because only the forced command itself may choose
    /// them.
    Remote,
}

/// Options that apply to the whole invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Globals {
    pub socket: Option<String>,
    pub json: bool,
    /// `--as NAME`: sent as `"as"` in every request.
    pub as_user: Option<String>,
}

/// What one command line asks labcli to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// One request to labd.
    Call(Call),
    /// `known-hosts`: `{"fn":"known_hosts"}`, whose result's `known_hosts` is printed.
    KnownHosts,
    /// `run CLASS -- COMMAND...`.
    Run(RunSpec),
    /// `console --expect REGEX`.
    Expect(ExpectSpec),
}

/// `labcli run`: claim, run a command, release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    pub class: String,
    pub power: bool,
    pub lease: Option<u64>,
    pub wait: Option<u64>,
    /// The program and its arguments (never through a shell).
    pub command: Vec<String>,
}

/// `labcli console --expect`: watch the console until a pattern shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectSpec {
    pub handle: Option<String>,
    /// A regular expression (the `regex` crate's syntax), already checked.
    pub pattern: String,
    pub timeout: Option<Duration>,
    /// Also search what the board printed earlier in this claim.
    pub since_claim: bool,
}

/// One parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub globals: Globals,
    /// `None` when the words held only global options.
    pub command: Option<Command>,
    /// Help or version text the words asked for (`--help`, `help CMD`,
    /// `--version`); nothing else is then done.
    pub help: Option<String>,
}

/// labcli's command line.
#[derive(Parser, Debug)]
#[command(
    name = "labcli",
    version,
    about = ABOUT,
    after_help = AFTER_HELP,
    subcommand_value_name = "COMMAND",
    max_term_width = 100
)]
pub struct Cli {
    /// labd's socket [default: $LABD_SOCKET, else /run/boardlab/jail.sock when present, else
    /// /run/boardlab/labd.sock]
    #[arg(long, global = true, value_name = "PATH", value_parser = non_empty, help_heading = "Global options")]
    pub socket: Option<String>,
    /// Print results as JSON, one object a line; errors as {"ok":false,"error":{..}}
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
    /// Act for user NAME (only from an account in daemon.trusted_gateways)
    #[arg(long = "as", global = true, value_name = "NAME", value_parser = non_empty, help_heading = "Global options")]
    pub as_user: Option<String>,
    /// Command options written before the command (`labcli --power claim X`).
    #[command(flatten)]
    early: Early,
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

/// The claim options of `claim` and `run`.
#[derive(Args, Debug, Clone, Default)]
pub struct ClaimOpts {
    /// Power the board on once it is yours
    #[arg(long)]
    pub power: bool,
    /// The claim's lease [default: the lab's, lease.default]
    #[arg(long, value_name = "DUR", value_parser = dur_secs)]
    pub lease: Option<u64>,
    /// Wait in the lab's queue for a free board, up to DUR [default: 365d]
    #[arg(
        long,
        value_name = "DUR",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "365d",
        value_parser = dur_secs
    )]
    pub wait: Option<u64>,
}

/// Where a command takes a handle.
#[derive(Args, Debug, Clone, Default)]
pub struct HandleArg {
    /// The claim's handle, or the name of a board you hold [default: the jail's claim, else
    /// $LABD_HANDLE]
    #[arg(value_name = "HANDLE|BOARD", value_parser = non_empty)]
    pub handle: Option<String>,
}

/// `maintenance BOARD on|off`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnOff {
    On,
    Off,
}

/// labcli's commands.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// The board classes: how many boards each has and how many are free
    Classes {
        /// Only the classes with a free board
        #[arg(long)]
        available: bool,
    },
    /// Every board: state, user, power, lease (--mine: yours, with their handles)
    Status {
        /// Only the boards you hold, each with its handle
        #[arg(long)]
        mine: bool,
    },
    /// Claim a free board of CLASS; prints its handle
    Claim {
        /// The board class (see `labcli classes`)
        #[arg(value_parser = non_empty)]
        class: String,
        #[command(flatten)]
        opts: ClaimOpts,
    },
    /// Extend a claim's lease
    Renew {
        #[command(flatten)]
        handle: HandleArg,
        /// The new lease, from now [default: the lab's, lease.default]
        #[arg(long, value_name = "DUR", value_parser = dur_secs)]
        lease: Option<u64>,
    },
    /// Re-initialise the claimed board (and its jail: a clean one)
    Reinit(HandleArg),
    /// Give the board back (it is powered off)
    Release(HandleArg),
    /// Power the board on (its PoE port)
    PowerOn(HandleArg),
    /// Power the board off
    PowerOff(HandleArg),
    /// Power the board off, then on
    PowerCycle(HandleArg),
    /// The board's serial console, both ways; `~.` after a newline detaches
    #[command(after_help = "\
With --expect, labcli only watches: it copies the console to standard output
until REGEX is seen (exit 0), the timeout passes or the console closes (exit 1).
For CI:  labcli console rockpro64-1 --expect 'login: ' --since-claim --timeout 5m")]
    Console {
        #[command(flatten)]
        handle: HandleArg,
        /// Watch only; type nothing (operators may watch any board read-only)
        #[arg(long)]
        read_only: bool,
        /// Watch until REGEX (Rust regex syntax, matched against the raw bytes) is seen
        #[arg(long, value_name = "REGEX", value_parser = regex_text)]
        expect: Option<String>,
        /// With --expect: give up after DUR [default: wait until the console closes]
        #[arg(long, value_name = "DUR", requires = "expect", value_parser = dur)]
        timeout: Option<Duration>,
        /// With --expect: also search what the board printed earlier in this claim (its log)
        #[arg(long, requires = "expect")]
        since_claim: bool,
    },
    /// The claim's console log (operators: any board's, by its name)
    Log {
        #[command(flatten)]
        handle: HandleArg,
        /// Only the last N lines
        #[arg(long, value_name = "N", value_parser = tail_lines)]
        tail: Option<u64>,
    },
    /// Who labd thinks you are
    Whoami,
    /// The full status dump (admins)
    Dump,
    /// Take a board out of service, or back into it (admins)
    Maintenance {
        /// The board's name
        #[arg(value_parser = non_empty)]
        board: String,
        /// on: out of service; off: back in
        #[arg(value_name = "on|off")]
        state: OnOff,
        /// Why, for everyone's `history` (one line, at most 200 characters)
        #[arg(long, value_name = "TEXT", value_parser = reason)]
        reason: Option<String>,
    },
    /// Run BOARD's health check now: power on, its console, power off (admins)
    Health {
        /// The board's name
        #[arg(value_parser = non_empty)]
        board: String,
    },
    /// End whoever's claim holds BOARD (admins)
    ForceRelease {
        /// The board's name
        #[arg(value_parser = non_empty)]
        board: String,
        /// Why, for the claimant and everyone's `history` (one line, at most 200 characters)
        #[arg(long, value_name = "TEXT", value_parser = reason)]
        reason: Option<String>,
    },
    /// What happened in the lab: claims, releases, power, faults, maintenance (this host's log)
    #[command(after_help = "\
Everyone sees every board's events; the details of a claim's jail are its claimant's and the
operators'. Events older than [events] keep (90 days by default) are gone.
Example:  labcli history --board rockpro64-1 --since 7d --kind force_release")]
    History {
        /// Only this board's events
        #[arg(long, value_name = "BOARD", value_parser = non_empty)]
        board: Option<String>,
        /// Only events by USER or about USER's claims
        #[arg(long, value_name = "USER", value_parser = non_empty)]
        user: Option<String>,
        /// Only the events of the last DUR (30m, 12h, 7d)
        #[arg(long, value_name = "DUR", value_parser = dur_secs)]
        since: Option<u64>,
        /// Only events of kind K (claim, renew, release, expire, force_release, maintenance_on, ...)
        #[arg(long, value_name = "K", value_parser = non_empty)]
        kind: Option<String>,
        /// At most the newest N events [default: 100]
        #[arg(long, value_name = "N", value_parser = history_limit)]
        limit: Option<u32>,
    },
    /// The lab's ssh host CA line for ~/.ssh/known_hosts
    KnownHosts,
    /// The board's microSD card: to the host (/dev/sdcard in the jail), the board, off; or flash an image
    #[command(after_help = "\
sd [HANDLE|BOARD] host|board|off|status
sd [HANDLE|BOARD] flash PATH
host: the card appears in the claim's jail as /dev/sdcard (the board must be
off; --power-off switches it off first). board: the card leaves the jail and
is connected to the board. off: neither. flash: PATH is an image file in the
jail (raw, .gz or .xz; with PATH.bmap beside it only the mapped blocks are
written); it is written with progress on stderr, read back and verified, and
the card goes to the board.")]
    Sd {
        /// [HANDLE|BOARD] ACTION [PATH]
        #[arg(value_name = "WORDS", num_args = 1..=3, required = true)]
        words: Vec<String>,
        /// With host or flash: power the board off first instead of refusing
        #[arg(long)]
        power_off: bool,
    },
    /// Claim a board of CLASS, run COMMAND with it, release it when COMMAND ends
    #[command(after_help = "\
COMMAND runs with LABD_HANDLE, LABD_BOARD, LABD_SOCKET and, when the claim has a
jail, LABD_JAIL_IP and LABD_SSH in its environment, so labcli commands in it
need no handle. The board is released when COMMAND exits, and when labcli gets
SIGINT, SIGTERM or SIGHUP (passed on to COMMAND first). labcli exits with
COMMAND's status (128+N when a signal N ended it).
Only where labcli runs itself: not in an ssh forced command, nor from stdin.
Example:  labcli run rockpro64 --power --lease 1h -- ./ci/test-on-board.sh")]
    Run {
        /// The board class
        #[arg(value_parser = non_empty)]
        class: String,
        #[command(flatten)]
        opts: ClaimOpts,
        /// The program to run and its arguments (after `--`; no shell)
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
}

/// Command options accepted before the command, as the hand-written parser
/// of old did (`labcli --wait claim X`). Hidden from the help.
#[derive(Args, Debug, Clone, Default)]
struct Early {
    #[arg(long = "available", hide = true)]
    available: bool,
    #[arg(long = "mine", hide = true)]
    mine: bool,
    #[arg(long = "power", hide = true)]
    power: bool,
    #[arg(long = "read-only", hide = true)]
    read_only: bool,
    #[arg(long = "lease", hide = true, value_parser = dur_secs)]
    lease: Option<u64>,
    #[arg(
        long = "wait",
        hide = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "365d",
        value_parser = dur_secs
    )]
    wait: Option<u64>,
    #[arg(long = "tail", hide = true, value_parser = tail_lines)]
    tail: Option<u64>,
}

impl Early {
    /// The options given, by name.
    fn given(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (on, name) in [
            (self.available, "available"),
            (self.mine, "mine"),
            (self.power, "power"),
            (self.read_only, "read-only"),
            (self.lease.is_some(), "lease"),
            (self.wait.is_some(), "wait"),
            (self.tail.is_some(), "tail"),
        ] {
            if on {
                v.push(name);
            }
        }
        v
    }
}

/// Every command's name, in the order of the help (without `help`).
pub fn commands() -> Vec<String> {
    Cli::command().get_subcommands().map(|c| c.get_name().to_string()).collect()
}

/// `--wait DUR` (a space, not `=`) for a DUR that starts with a digit, as
/// of old: joined into `--wait=DUR` so that clap, which takes `--wait`'s
/// value only after `=`, sees it; `--wait CLASS` stays a bare `--wait`.
fn join_wait(words: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(words.len() + 1);
    out.push("labcli".to_string());
    let mut it = words.iter().peekable();
    while let Some(w) = it.next() {
        if w == "--" {
            out.push(w.clone());
            out.extend(it.cloned());
            break;
        }
        if w == "--wait" {
            if let Some(next) = it.next_if(|n| n.starts_with(|c: char| c.is_ascii_digit())) {
                out.push(format!("--wait={next}"));
                continue;
            }
        }
        out.push(w.clone());
    }
    out
}

/// Parses the words of one command line.
pub fn parse(words: &[String], origin: Origin) -> Result<Parsed, UsageError> {
    let cli = match Cli::try_parse_from(join_wait(words)) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            return match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    Ok(Parsed { globals: Globals::default(), command: None, help: Some(e.render().to_string()) })
                }
                _ => Err(usage::from_clap(&e)),
            };
        }
    };
    if origin == Origin::Remote {
        for (given, name) in [(cli.socket.is_some(), "socket"), (cli.as_user.is_some(), "as")] {
            if given {
                return Err(UsageError(format!("option --{name} is not allowed in a remote command")));
            }
        }
        if matches!(cli.command, Some(Cmd::Run { .. })) {
            return Err(UsageError(
                "`run` is not available here: it runs a command where labcli runs (use claim and release)".into(),
            ));
        }
    }
    let globals = Globals { socket: cli.socket, json: cli.json, as_user: cli.as_user };
    let command = merge(cli.early, cli.command)?;
    Ok(Parsed { globals, command, help: None })
}

fn twice(name: &str) -> UsageError {
    UsageError(format!("option --{name} given twice"))
}

fn flag(early: bool, late: bool, name: &str) -> Result<bool, UsageError> {
    if early && late {
        return Err(twice(name));
    }
    Ok(early || late)
}

fn value<T>(early: Option<T>, late: Option<T>, name: &str) -> Result<Option<T>, UsageError> {
    match (early, late) {
        (Some(_), Some(_)) => Err(twice(name)),
        (e, l) => Ok(e.or(l)),
    }
}

fn claim_opts(early: &Early, o: ClaimOpts) -> Result<ClaimOpts, UsageError> {
    Ok(ClaimOpts {
        power: flag(early.power, o.power, "power")?,
        lease: value(early.lease, o.lease, "lease")?,
        wait: value(early.wait, o.wait, "wait")?,
    })
}

/// The command with the options written before it.
fn merge(early: Early, cmd: Option<Cmd>) -> Result<Option<Command>, UsageError> {
    let given = early.given();
    let Some(cmd) = cmd else {
        return match given.first() {
            Some(name) => Err(UsageError(format!("option --{name} needs a command"))),
            None => Ok(None),
        };
    };
    let (name, accepts): (&str, &[&str]) = match &cmd {
        Cmd::Classes { .. } => ("classes", &["available"]),
        Cmd::Status { .. } => ("status", &["mine"]),
        Cmd::Claim { .. } => ("claim", &["power", "lease", "wait"]),
        Cmd::Run { .. } => ("run", &["power", "lease", "wait"]),
        Cmd::Renew { .. } => ("renew", &["lease"]),
        Cmd::Console { .. } => ("console", &["read-only"]),
        Cmd::Log { .. } => ("log", &["tail"]),
        _ => ("this command", &[]),
    };
    if let Some(bad) = given.iter().find(|g| !accepts.contains(g)) {
        return Err(UsageError(format!("option --{bad} is not valid for `{name}`")));
    }
    let call = match cmd {
        Cmd::Classes { available } => Call::Classes { available: flag(early.available, available, "available")? },
        Cmd::Status { mine } => Call::Status { mine: flag(early.mine, mine, "mine")? },
        Cmd::Claim { class, opts } => {
            let o = claim_opts(&early, opts)?;
            Call::Claim { class, power: o.power, lease: o.lease, wait: o.wait }
        }
        Cmd::Run { class, opts, command } => {
            let o = claim_opts(&early, opts)?;
            return Ok(Some(Command::Run(RunSpec { class, power: o.power, lease: o.lease, wait: o.wait, command })));
        }
        Cmd::Renew { handle, lease } => {
            Call::Renew { handle: handle.handle, lease: value(early.lease, lease, "lease")? }
        }
        Cmd::Reinit(h) => Call::Reinit { handle: h.handle },
        Cmd::Release(h) => Call::Release { handle: h.handle },
        Cmd::PowerOn(h) => Call::PowerOn { handle: h.handle },
        Cmd::PowerOff(h) => Call::PowerOff { handle: h.handle },
        Cmd::PowerCycle(h) => Call::PowerCycle { handle: h.handle },
        Cmd::Console { handle, read_only, expect, timeout, since_claim } => {
            let read_only = flag(early.read_only, read_only, "read-only")?;
            match expect {
                // Watching for a pattern never types: read-only either way.
                Some(pattern) => {
                    return Ok(Some(Command::Expect(ExpectSpec {
                        handle: handle.handle,
                        pattern,
                        timeout,
                        since_claim,
                    })))
                }
                None => Call::Console { handle: handle.handle, read_only },
            }
        }
        Cmd::Log { handle, tail } => Call::ConsoleLog { handle: handle.handle, tail: value(early.tail, tail, "tail")? },
        Cmd::Whoami => Call::Whoami,
        Cmd::Dump => Call::Dump,
        Cmd::Maintenance { board, state, reason } => Call::Maintenance { board, on: state == OnOff::On, reason },
        Cmd::ForceRelease { board, reason } => Call::ForceRelease { board, reason },
        Cmd::Health { board } => Call::Health { board },
        Cmd::History { board, user, since, kind, limit } => {
            Call::History(HistoryQuery { board, user, since, kind, limit })
        }
        Cmd::KnownHosts => return Ok(Some(Command::KnownHosts)),
        Cmd::Sd { words, power_off } => super::sd::call(&words, power_off)?,
    };
    Ok(Some(Command::Call(call)))
}

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;
