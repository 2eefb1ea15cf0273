//! `synccli`: what `oneway` and `twoway` share as commands (SPEC section 1's front end): the
//! common flags, the logging setup, the loop of periodic passes and the summary at the end.
//! The engine (`synccore`) never parses arguments or prints; the binaries own their own flags
//! and exit codes and call this crate for everything they do alike.

pub mod args;
pub mod help;
pub mod interval;
pub mod logging;
pub mod output;
pub mod passes;
pub mod progress;
pub mod status;
pub mod watching;

use synccore::Error;

use crate::args::CommonArgs;

/// A program: its name, for messages, and the tag of its log lines (`[ONEWAY]`).
#[derive(Debug, Clone, Copy)]
pub struct Program {
    pub name: &'static str,
    pub tag: &'static str,
}

/// Runs a command the way both programs do: `check` validates the input before anything is
/// created (a refusal is one line on stderr and its exit code, SPEC section 5); then logging
/// is set up (`<name>.log` by default) and `work` runs; an error that ends it is logged and
/// mapped to its exit code. Returns the exit status.
pub fn run_command<C>(
    program: Program,
    common: &CommonArgs,
    check: impl FnOnce() -> Result<C, Error>,
    work: impl FnOnce(C) -> Result<u8, Error>,
) -> u8 {
    let refuse = |err: &Error| {
        eprintln!("{}: error: {err}", program.name);
        err.exit_code() as u8
    };
    let checked = match check() {
        Ok(checked) => checked,
        Err(err) => return refuse(&err),
    };
    // Issue 16: `--json` events on stdout; a progress bar only on a terminal, not with -q.
    output::set_json(common.json);
    progress::set_terminal(std::io::IsTerminal::is_terminal(&std::io::stderr()) && !common.quiet);
    let default_log = format!("{}.log", program.name);
    if let Err(err) = logging::init(program.tag, common.log.as_deref(), &default_log, common.verbosity()) {
        return refuse(&err);
    }
    match work(checked) {
        Ok(code) => code,
        Err(err) => {
            log::error!("{err}");
            err.exit_code() as u8
        }
    }
}
