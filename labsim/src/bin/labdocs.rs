//! labdocs: the man pages and shell completions of labcli, labd and
//! labsim, made from their clap definitions (`make install` and `make
//! docs` run it; so does labsim's test `tests/docs.rs`).
//!
//!     labdocs man DIR           DIR/man1/labcli.1, labcli-claim.1, ..., labsim.1; DIR/man8/labd.8, ...
//!     labdocs completions DIR   DIR/bash/labcli, DIR/zsh/_labcli, DIR/fish/labcli.fish, the same for labd and labsim

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

#[derive(Parser)]
#[command(name = "labdocs", about = "boardlab's man pages and shell completions, from the clap definitions")]
struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Man pages: DIR/man1 (labcli, labsim) and DIR/man8 (labd)
    Man { dir: PathBuf },
    /// Completions for bash, zsh and fish: DIR/bash, DIR/zsh, DIR/fish
    Completions { dir: PathBuf },
}

/// The commands documented, with their man section.
fn commands() -> Vec<(clap::Command, &'static str)> {
    vec![
        (boardlab::cli::args::Cli::command(), "1"),
        (boardlab::cmdline::Labd::command(), "8"),
        (labsim::cli::Labsim::command(), "1"),
    ]
}

/// One page per command and per visible subcommand (`labcli-claim.1`).
fn man(dir: &Path) -> std::io::Result<()> {
    fn pages(cmd: clap::Command, section: &str, dir: &Path) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            pages(sub, section, dir)?;
        }
        let source = format!("boardlab {}", env!("CARGO_PKG_VERSION"));
        let man = clap_mangen::Man::new(cmd.clone()).section(section).manual("boardlab").source(source);
        let mut page = Vec::new();
        man.render_title(&mut page)?;
        man.render_name_section(&mut page)?;
        man.render_synopsis_section(&mut page)?;
        man.render_description_section(&mut page)?;
        if cmd.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(&mut page)?;
        }
        if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
            man.render_subcommands_section(&mut page)?;
        }
        if let Some(notes) = cmd.get_after_long_help().or_else(|| cmd.get_after_help()) {
            // As written: its columns line up (clap_mangen would refill it).
            page.extend_from_slice(format!(".SH NOTES\n.nf\n{}\n.fi\n", roff_text(&notes.to_string())).as_bytes());
        }
        if cmd.get_version().is_some() {
            man.render_version_section(&mut page)?;
        }
        std::fs::write(dir.join(man.get_filename()), page)
    }
    for (cmd, section) in commands() {
        let out = dir.join(format!("man{section}"));
        std::fs::create_dir_all(&out)?;
        let mut cmd = cmd.disable_help_subcommand(true);
        cmd.build();
        pages(cmd, section, &out)?;
    }
    Ok(())
}

/// Text for roff's no-fill mode: backslashes and line-leading control
/// characters escaped.
fn roff_text(text: &str) -> String {
    text.lines()
        .map(|l| {
            let l = l.replace('\\', "\\e").replace('-', "\\-");
            if l.starts_with(['.', '\'']) {
                format!("\\&{l}")
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn completions(dir: &Path) -> std::io::Result<()> {
    for (shell, sub) in [(Shell::Bash, "bash"), (Shell::Zsh, "zsh"), (Shell::Fish, "fish")] {
        let out = dir.join(sub);
        std::fs::create_dir_all(&out)?;
        for (mut cmd, _) in commands() {
            let name = cmd.get_name().to_string();
            clap_complete::generate_to(shell, &mut cmd, name, &out)?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let (done, dir) = match Args::parse().what {
        What::Man { dir } => (man(&dir), dir),
        What::Completions { dir } => (completions(&dir), dir),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("labdocs: writing to {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}
