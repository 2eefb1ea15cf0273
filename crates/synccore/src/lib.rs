//! `synccore`: the engine shared by `oneway` and `twoway`. One pipeline serves both:
//! **scan → plan → apply**, with the versions layout, merge state and locks beside it.
//! The library decides and acts; it never parses arguments, prints or exits (the binaries do).

pub mod apply;
pub mod bisync;
pub mod checksum;
pub mod entry;
pub mod error;
pub mod fault;
pub mod fsio;
pub mod jsonbytes;
pub mod lock;
pub mod logging;
pub mod merge;
pub mod mirror;
pub mod observe;
pub mod plan;
pub mod recovery;
pub mod relpath;
pub mod restore;
pub mod roots;
pub mod scan;
pub mod shutdown;
pub mod state;
pub mod versioned;
pub mod versions;

pub use error::{Error, Result};
