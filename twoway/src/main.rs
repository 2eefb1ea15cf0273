//! `twoway`: keeps two directories equal in both directions (SPEC section 4). Not built yet:
//! the merge and the recovery system arrive with their own issues.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("twoway: error: not yet implemented");
    ExitCode::from(2)
}
