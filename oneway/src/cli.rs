//! Command-line arguments of `oneway` (SPEC section 3), turned once into validated options.

use std::path::PathBuf;

use clap::Parser;

/// Mirror SOURCE into BACKUP, once or periodically, atomically and without ever writing SOURCE.
#[derive(Debug, Parser)]
#[command(name = "oneway", version, about, long_about = None)]
pub struct Args {
    /// The directory to back up (never written).
    pub source: PathBuf,

    /// The mirror to keep equal to SOURCE (created if missing); with --versioned, the versions
    /// root that holds `__versions__/<name>/_1` (latest) and `_0` (previous).
    pub backup: PathBuf,

    /// Keep the latest and the previous version of SOURCE under BACKUP/__versions__ instead of
    /// mirroring; unchanged files are shared between versions as hard links.
    #[arg(long, visible_alias = "versioned-backup")]
    pub versioned: bool,

    /// Seconds between passes, 1 to 31536000 (one year).
    // A bound, not just `1..`: `now + interval` must never overflow (hardening issue, part A).
    #[arg(short, long, value_name = "SECS", default_value_t = 60, value_parser = synccore::interval::parse_secs)]
    pub interval: u64,

    /// Log file (appended to; recreated if deleted while running).
    #[arg(short, long, value_name = "FILE", default_value = "oneway.log")]
    pub log: PathBuf,

    /// Run one pass and exit with its status.
    #[arg(long)]
    pub once: bool,

    /// Print the plan a real pass would carry out and change nothing (implies --once).
    #[arg(long)]
    pub dry_run: bool,

    /// Compare equal-size files by content even when their mtimes agree (with --versioned:
    /// hash every file instead of trusting the manifest's hash cache).
    #[arg(long)]
    pub checksum: bool,

    /// Abort a pass that would delete more than this percentage of BACKUP's files (mirror only:
    /// a versioned pass deletes nothing but the oldest version).
    #[arg(long, value_name = "PERCENT", default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub max_delete: u8,

    /// Carry out a pass that a safety rail (max-delete, empty source) would abort.
    #[arg(long)]
    pub force: bool,

    /// Show only warnings and errors on the console.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Show debug detail on the console and in the log.
    #[arg(long)]
    pub verbose: bool,
}
