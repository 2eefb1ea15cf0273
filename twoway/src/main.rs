//! `twoway`: keeps two directories equal in both directions and runs the recovery system that
//! keeps their earlier versions (SPEC section 4). A thin shell: parse the arguments, run, exit
//! with the status.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(twoway::run(&twoway::cli::parse()))
}
