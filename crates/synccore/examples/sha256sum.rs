//! Prints the SHA-256 of each file named, like `sha256sum`, using synccore's `file_checksum`.
//! Used by `bench/` to compare hashing throughput with `openssl dgst -sha256`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    for arg in std::env::args_os().skip(1) {
        match synccore::checksum::file_checksum(arg.as_ref()) {
            Ok(d) => println!("{d}  {}", synccore::relpath::escape_path(arg.as_ref())),
            Err(e) => {
                eprintln!("sha256sum: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    code
}
