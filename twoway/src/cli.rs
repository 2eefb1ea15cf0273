//! Command-line arguments of `twoway` (SPEC section 4).

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// The versions `--restore` can bring back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VersionArg {
    /// The latest kept version (`_1`).
    Latest,
    /// The version before it (`_0`).
    Previous,
    /// What the directory held before the last restore.
    Undo,
}

const HOME_HELP: &str = "Where the merge state and locks live [default: $TWOWAY_HOME, \
                         else $XDG_DATA_HOME/twoway, else ~/.local/share/twoway]";

/// Keep two directories equal in both directions, with a three-way merge against the state
/// of the last pass; changes on either side propagate, conflicts keep both versions.
#[derive(Debug, Parser)]
#[command(name = "twoway", about, long_about = None)]
pub struct Args {
    /// The first directory (side A).
    pub dir_a: PathBuf,

    /// The second directory (side B); not given with --restore.
    #[arg(required_unless_present = "restore", conflicts_with = "restore")]
    pub dir_b: Option<PathBuf>,

    /// Restore the first directory from its kept versions instead of syncing (it may no
    /// longer exist).
    #[arg(long)]
    pub restore: bool,

    /// With --restore: which version to bring back.
    #[arg(long, value_enum, default_value_t = VersionArg::Latest, requires = "restore")]
    pub version: VersionArg,

    /// The recovery configuration [default: <home>/config.json, created when missing].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Seconds between passes, 1 to 31536000 (one year).
    // A bound, not just `1..`: `now + interval` must never overflow (hardening issue, part A).
    #[arg(short, long, value_name = "SECS", default_value_t = 60, value_parser = synccore::interval::parse_secs)]
    pub interval: u64,

    /// Log file (appended to; recreated if deleted while running).
    #[arg(short, long, value_name = "FILE", default_value = "twoway.log")]
    pub log: PathBuf,

    /// Where the merge state and locks live.
    #[arg(long, value_name = "DIR", long_help = HOME_HELP)]
    pub home: Option<PathBuf>,

    /// Run one pass and exit with its status.
    #[arg(long)]
    pub once: bool,

    /// Print the plan a real pass would carry out and change nothing (implies --once).
    #[arg(long)]
    pub dry_run: bool,

    /// Abort a pass that would delete more than this percentage of a side's files.
    #[arg(long, value_name = "PERCENT", default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub max_delete: u8,

    /// Carry out a pass that a safety rail (max-delete, empty side) would abort.
    #[arg(long)]
    pub force: bool,

    /// Do not run the recovery system (no versioning children, no config.json).
    #[arg(long)]
    pub no_recovery: bool,

    /// Show only warnings and errors on the console.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Show debug detail on the console and in the log.
    #[arg(long)]
    pub verbose: bool,
}
