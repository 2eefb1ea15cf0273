//! `oneway`: mirrors a source directory into a backup directory (SPEC section 3). A thin shell:
//! parse the arguments, run, exit with the status.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(oneway::run(&oneway::cli::parse()))
}
