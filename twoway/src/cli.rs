//! Command-line arguments of `twoway` (SPEC section 4).
//!
//! `--version` is two things (hardening issue point 14): with `--restore`, the state to bring
//! back (`latest`, `previous`, `undo`, `undo:<stamp>`); alone, without a value, it prints the
//! program's version like `oneway -V`. Clap cannot tell those apart before it checks the
//! required arguments, so [`parse`] first looks at the command line with a lenient copy of the
//! parser; clap's own errors (bad values, with the valid ones listed) are kept.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use clap::builder::{PossibleValue, TypedValueParser};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, Command, CommandFactory, Parser};
use synccli::args::CommonArgs;
use synccore::versions::undo::Stamp;

/// The versions `--restore` can bring back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionArg {
    /// The latest kept version (`_1`).
    Latest,
    /// The version before it (`_0`).
    Previous,
    /// The newest undo generation: what the directory held before the last restore.
    Undo,
    /// The undo generation with this stamp.
    UndoAt(Stamp),
}

impl VersionArg {
    /// Parses `latest`, `previous`, `undo` or `undo:<stamp>`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "latest" => Some(VersionArg::Latest),
            "previous" => Some(VersionArg::Previous),
            "undo" => Some(VersionArg::Undo),
            _ => value.strip_prefix("undo:").and_then(Stamp::parse).map(VersionArg::UndoAt),
        }
    }
}

/// Clap's parser for `--version`: the four forms, listed as the possible values in `--help`
/// and in the error for a bad value.
#[derive(Debug, Clone, Copy)]
pub struct VersionParser;

impl VersionParser {
    fn values() -> [PossibleValue; 4] {
        [
            PossibleValue::new("latest").help("The latest kept version (_1), the default"),
            PossibleValue::new("previous").help("The version before it (_0)"),
            PossibleValue::new("undo").help("What the directory held before the last restore"),
            PossibleValue::new("undo:<stamp>")
                .help("An older undo generation, e.g. undo:20261125T143000Z (see __versions__/<name>/_undo)"),
        ]
    }
}

impl TypedValueParser for VersionParser {
    type Value = VersionArg;

    fn parse_ref(&self, cmd: &Command, arg: Option<&Arg>, value: &OsStr) -> Result<VersionArg, clap::Error> {
        if let Some(version) = value.to_str().and_then(VersionArg::parse) {
            return Ok(version);
        }
        let mut err = clap::Error::new(ErrorKind::InvalidValue).with_cmd(cmd);
        if let Some(arg) = arg {
            err.insert(ContextKind::InvalidArg, ContextValue::String(arg.to_string()));
        }
        err.insert(ContextKind::InvalidValue, ContextValue::String(value.to_string_lossy().into_owned()));
        let valid = Self::values().iter().map(|v| v.get_name().to_owned()).collect();
        err.insert(ContextKind::ValidValue, ContextValue::Strings(valid));
        Err(err)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(Self::values().into_iter()))
    }
}

/// Parses the command line (exiting on `--help`, a version request or a usage error, as clap
/// does): a bare `--version` (no value, no `--restore`) prints the version; `--version VALUE`
/// without `--restore` is a usage error.
pub fn parse() -> Args {
    let command_line: Vec<OsString> = std::env::args_os().collect();
    synccli::help::print_and_exit_if_asked(Args::command(), &command_line);
    // A lenient look first: required arguments and bad values do not stop it, and it sees
    // `--version`'s raw value (if any).
    let probe = Args::command()
        .ignore_errors(true)
        .disable_help_flag(true)
        .mut_arg("version", |a| a.num_args(0..=1).value_parser(clap::value_parser!(OsString)));
    if let Ok(m) = probe.try_get_matches_from(&command_line)
        && m.value_source("version") == Some(ValueSource::CommandLine)
        && !m.get_flag("restore")
    {
        match m.get_one::<OsString>("version") {
            None => {
                print!("{}", Args::command().render_version());
                std::process::exit(0);
            }
            Some(value) => needs_restore(value.as_os_str()),
        }
    }
    let args = Args::parse_from(command_line);
    if let (Some(_), false) = (args.version, args.restore) {
        // Unreachable through the look above; kept so that a sync never runs with it.
        needs_restore(OsStr::new("VALUE"));
    }
    args
}

fn needs_restore(value: &OsStr) -> ! {
    let message = format!("--version {} needs --restore", value.to_string_lossy());
    Args::command().error(ErrorKind::ArgumentConflict, message).exit()
}

/// What `--help` ends with (issue 16, point 5): examples, then the exit codes.
const AFTER_HELP: &str = "\
Examples:
  twoway ~/Documents /mnt/usb/Documents --once      one pass, exit with its status
  twoway ~/Documents /mnt/usb/Documents             a pass every 60 s until Ctrl+C
  twoway ~/Documents /mnt/usb/Documents -n          what a pass would do (changes nothing)
  twoway ~/Documents --restore                      bring back the latest kept version
  twoway ~/Documents --restore --version previous   ... or the one before it
  twoway ~/Documents --restore --version undo       undo the last restore
  twoway --status                                   pairs, versions, rails, running processes
  twoway --completions bash > ~/.local/share/bash-completion/completions/twoway
";

const HOME_HELP: &str = "Where the merge state and locks live [default: $TWOWAY_HOME, \
                         else $XDG_DATA_HOME/twoway, else ~/.local/share/twoway]";

/// Keep two directories equal in both directions, with a three-way merge against the state
/// of the last pass; changes on either side propagate, conflicts keep both versions.
#[derive(Debug, Parser)]
#[command(name = "twoway", version, about, long_about = None, disable_version_flag = true,
          after_help = "Examples and exit codes: twoway --help.",
          after_long_help = synccli::help::after_long_help(AFTER_HELP))]
pub struct Args {
    /// The first directory (side A).
    #[arg(required_unless_present = "status")]
    pub dir_a: Option<PathBuf>,

    /// The second directory (side B); not given with --restore.
    #[arg(required_unless_present_any = ["restore", "version", "status"], conflicts_with = "restore")]
    pub dir_b: Option<PathBuf>,

    /// Show each pair and protected directory of the home (last pass, rails, versions, undo
    /// generations, disk used, running processes); changes nothing.
    #[arg(long, conflicts_with_all = ["dir_a", "restore"])]
    pub status: bool,

    /// Restore the first directory from its kept versions instead of syncing (it may no
    /// longer exist).
    #[arg(long)]
    pub restore: bool,

    /// With --restore: which version to bring back [default: latest]. Alone, without a
    /// value: print the version.
    #[arg(long, value_name = "VERSION", value_parser = VersionParser)]
    pub version: Option<VersionArg>,

    /// Print the version.
    #[arg(short = 'V', action = ArgAction::Version)]
    pub print_version: (),

    /// The recovery configuration [default: <home>/config.json, created when missing].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Where the merge state and locks live.
    #[arg(long, value_name = "DIR", long_help = HOME_HELP)]
    pub home: Option<PathBuf>,

    /// Do not run the recovery system (no versioning children, no config.json).
    #[arg(long)]
    pub no_recovery: bool,

    #[command(flatten)]
    pub common: CommonArgs,
}
