//! The flags both programs take (SPEC sections 3 and 4), declared once and flattened into each
//! program's own arguments (`#[command(flatten)]`), and turned once into the values the
//! passes use.

use std::path::PathBuf;

use clap::Args;
use synccore::ignore::Excludes;
use synccore::rails::Rails;

use crate::logging::Verbosity;

/// Flags shared by `oneway` and `twoway`.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Seconds between passes (1 to 31536000).
    #[arg(short, long, value_name = "SECS", default_value_t = 60, value_parser = crate::interval::parse_secs)]
    pub interval: u64,

    /// Log file, appended to and recreated if deleted while running [default: oneway.log or
    /// twoway.log in the working directory; without it when that cannot be created].
    #[arg(short, long, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Run one pass and exit with its status.
    #[arg(long)]
    pub once: bool,

    /// Watch for changes (inotify) and sync each burst as soon as it settles, rescanning only
    /// the directories that changed; --interval then sets the period of a full safety pass.
    #[arg(short, long, conflicts_with_all = ["once", "dry_run"])]
    pub watch: bool,

    /// With --watch: milliseconds a burst of changes must be quiet before its pass starts (a
    /// burst that goes on is cut after 2 s).
    #[arg(long, value_name = "MS", default_value_t = 200, requires = "watch",
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub settle: u64,

    /// Print the plan a real pass would carry out and change nothing (implies --once).
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    /// Abort a pass that would delete more than this percentage of a side's files (BACKUP,
    /// the versions, either side of twoway); moves are not deletes.
    #[arg(long, value_name = "PERCENT", default_value_t = synccore::rails::DEFAULT_MAX_DELETE_PERCENT,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    pub max_delete: u8,

    /// Carry out a pass that a safety rail (max-delete, empty source) would abort.
    #[arg(long)]
    pub force: bool,

    /// Show only warnings and errors on the console.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Show debug detail (unchanged checks, timings) on the console and in the log.
    #[arg(short, long)]
    pub verbose: bool,

    /// Write JSON Lines events on stdout for scripts (docs/formats.md); human lines stay on stderr.
    #[arg(long)]
    pub json: bool,

    /// Print a completion script for SHELL on stdout and exit.
    #[arg(long, value_name = "SHELL", value_enum)]
    pub completions: Option<clap_complete::Shell>,

    /// Print the man page on stdout and exit.
    #[arg(long)]
    pub man: bool,
    /// Ignore paths matching PATTERN (gitignore syntax), as if it were a last line of the
    /// root's .syncignore; repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,

    /// Read --exclude patterns from FILE, one per line (gitignore syntax).
    #[arg(long, value_name = "FILE")]
    pub exclude_from: Vec<PathBuf>,
}

impl CommonArgs {
    /// How much the console shows.
    pub fn verbosity(&self) -> Verbosity {
        match (self.quiet, self.verbose) {
            (true, _) => Verbosity::Quiet,
            (_, true) => Verbosity::Verbose,
            _ => Verbosity::Normal,
        }
    }

    /// The safety rails the flags set.
    pub fn rails(&self) -> Rails {
        Rails { max_delete_percent: self.max_delete, force: self.force }
    }

    /// True when the run is a single pass (`--once`, or a dry run).
    pub fn once(&self) -> bool {
        self.once || self.dry_run
    }

    /// The period between passes (full passes, in watch mode).
    pub fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.interval)
    }

    /// How long a burst of changes must be quiet before its pass (watch mode).
    pub fn settle(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.settle)
    }

    /// The `--exclude-from` files' patterns, then the `--exclude` ones (issue 14), checked:
    /// a bad pattern or an unreadable file is bad input.
    pub fn excludes(&self) -> Result<Excludes, synccore::Error> {
        let mut excludes = Excludes::none();
        for file in &self.exclude_from {
            excludes.add(file, &Excludes::read_lines(file)?)?;
        }
        for pattern in &self.exclude {
            excludes.add(std::path::Path::new("--exclude"), std::slice::from_ref(pattern))?;
        }
        Ok(excludes)
    }
}
