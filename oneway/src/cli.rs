//! Command-line arguments of `oneway` (SPEC section 3): its own plus the flags both programs
//! share ([`synccli::args::CommonArgs`]).

use std::path::PathBuf;

use clap::Parser;
use synccli::args::CommonArgs;

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

    /// Compare equal-size files by content even when their mtimes agree (with --versioned:
    /// hash every file instead of trusting the hash cache).
    #[arg(long)]
    pub checksum: bool,

    /// Also delete what BACKUP holds at paths SOURCE's rules ignore (like rsync's); without it
    /// they are left alone. Mirror only.
    #[arg(long, conflicts_with = "versioned")]
    pub delete_excluded: bool,

    #[command(flatten)]
    pub common: CommonArgs,
}
