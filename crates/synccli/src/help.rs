//! Help that teaches (issue 16, point 5): the exit codes every `--help` ends with, and the
//! two outputs that need no positional arguments, `--completions SHELL` (`clap_complete`) and
//! `--man` (`clap_mangen`), both printed on stdout before the real parse (which would refuse
//! a command line without SOURCE and BACKUP).

use std::ffi::OsString;
use std::io::Write;

use clap::Command;

/// The exit codes of SPEC section 5, as `--help` shows them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success (also after a clean stop on SIGINT or SIGTERM)
  1  some entries failed (each is logged with its path and reason)
  2  bad usage or input; nothing was changed
  3  aborted by a safety rail (empty or missing source, too many deletions, another
     process holds the lock); nothing was changed";

/// The end of a program's `--help`: its examples, then the exit codes.
pub fn after_long_help(examples: &str) -> String {
    format!("{examples}\n{EXIT_CODES}")
}

/// When the command line asks for `--completions SHELL` or `--man`, prints it on stdout and
/// exits 0; otherwise returns. `cmd` is the program's full command (`Args::command()`).
pub fn print_and_exit_if_asked(cmd: Command, command_line: &[OsString]) {
    // A lenient look: required arguments and other errors do not stop it.
    let probe = cmd.clone().ignore_errors(true).disable_help_flag(true).disable_version_flag(true);
    let Ok(matches) = probe.try_get_matches_from(command_line) else { return };
    let shell = matches.try_get_one::<clap_complete::Shell>("completions").ok().flatten().copied();
    let man = matches.try_get_one::<bool>("man").ok().flatten().copied().unwrap_or(false);
    let mut out = std::io::stdout().lock();
    if let Some(shell) = shell {
        let mut cmd = cmd;
        let name = cmd.get_name().to_owned();
        clap_complete::generate(shell, &mut cmd, name, &mut out);
    } else if man {
        match clap_mangen::Man::new(cmd).render(&mut out) {
            // A reader that stopped early (`| head`) is no failure.
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                let _ = writeln!(std::io::stderr(), "cannot write the man page: {e}");
                std::process::exit(1);
            }
            _ => {}
        }
    } else {
        return;
    }
    let _ = out.flush();
    std::process::exit(0);
}
