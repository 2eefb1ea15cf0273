//! `synccli`: what `oneway` and `twoway` share as commands (SPEC section 1's front end): the
//! common flags, the logging setup, the loop of periodic passes and the summary at the end.
//! The engine (`synccore`) never parses arguments or prints; the binaries own their own flags
//! and exit codes and call this crate for everything they do alike.

pub mod args;
pub mod interval;
pub mod logging;
pub mod passes;
