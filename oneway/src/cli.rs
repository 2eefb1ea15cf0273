//! Command-line arguments of `oneway` (SPEC section 3): its own plus the flags both programs
//! share ([`synccli::args::CommonArgs`]).

use std::path::PathBuf;

use clap::{CommandFactory, Parser};
use synccli::args::CommonArgs;

/// What `--help` ends with (issue 16, point 5): examples, then the exit codes.
const AFTER_HELP: &str = "\
Examples:
  oneway ~/Documents /mnt/backup/Documents --once     one pass, exit with its status
  oneway ~/Documents /mnt/backup/Documents -i 300     a pass every 5 minutes until Ctrl+C
  oneway ~/Documents /mnt/backup/Documents -n         what a pass would do (changes nothing)
  oneway ~/Documents /mnt/backup --versioned          keep the latest and the previous version
  oneway ~/Documents s3://bucket/laptop --once        back up to S3 (AWS_* variables for the keys)
  oneway ~/Documents sftp://me@nas/srv/backup/docs    back up to another host over SSH
  oneway s3://bucket/laptop ~/Documents --once        bring a backup back after a lost disk
  oneway SRC DST --once --json | jq -c 'select(.event == \"error\")'    errors, for a script
  oneway --completions bash > ~/.local/share/bash-completion/completions/oneway
";

/// Parses the command line (exiting on `--help`, `--version`, `--completions`, `--man` or a
/// usage error, as clap does).
pub fn parse() -> Args {
    let command_line: Vec<std::ffi::OsString> = std::env::args_os().collect();
    synccli::help::print_and_exit_if_asked(Args::command(), &command_line);
    Args::parse_from(command_line)
}

/// Mirror SOURCE into BACKUP, once or periodically, atomically and without ever writing SOURCE.
#[derive(Debug, Parser)]
#[command(name = "oneway", version, about, long_about = None,
          after_help = "Examples and exit codes: oneway --help.",
          after_long_help = synccli::help::after_long_help(AFTER_HELP))]
pub struct Args {
    /// The directory to back up (never written); or a remote backup to bring back into a local
    /// BACKUP: `s3://bucket/prefix`, `sftp://[user@]host[:port]/path`, or a remote version
    /// `URL/__versions__/<name>/_1` (latest) or `_0` (previous).
    pub source: PathBuf,

    /// The mirror to keep equal to SOURCE (created if missing); with --versioned, the versions
    /// root that holds `__versions__/<name>/_1` (latest) and `_0` (previous). May be a remote
    /// store: `s3://bucket/prefix` or `sftp://[user@]host[:port]/path`.
    pub backup: PathBuf,

    /// A setting of the remote store, repeatable. S3: `region`, `endpoint`, `access_key_id`,
    /// `secret_access_key`, `session_token` (else `AWS_REGION`, `AWS_ENDPOINT_URL`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`). SFTP: `user`, `key`
    /// (an identity file), `known_hosts` (`strict`, `add` or `accept`).
    #[arg(long = "remote-option", value_name = "KEY=VALUE", value_parser = key_value)]
    pub remote_options: Vec<(String, String)>,

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

/// Parses `KEY=VALUE` (`--remote-option`).
fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        // The value is never repeated: it may be a secret typed with the wrong separator.
        _ => Err("expected KEY=VALUE (a key, '=', then the value)".to_owned()),
    }
}
