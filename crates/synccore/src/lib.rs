//! `synccore`: the primitives `oneway` and `twoway` share, the design card's "checksum, diff
//! and copy primitives". One pipeline serves both programs: **scan → diff (a plan) → apply**,
//! with every entry reached beneath its root through directory descriptors (`fsio`). Beside
//! it: the versions layout that `oneway` writes and `twoway --restore` reads (with the repair
//! of an interrupted rotation), locks, the safety rails and the shutdown signal. The library
//! decides and acts; it never parses arguments, prints or exits.

pub mod apply;
pub mod checksum;
pub mod diff;
pub mod entry;
pub mod error;
pub mod fault;
pub mod fsio;
pub mod ignore;
pub mod jsonbytes;
pub mod lock;
pub mod moves;
pub mod plan;
pub mod rails;
pub mod relpath;
pub mod rescan;
pub mod roots;
pub mod scan;
pub mod shutdown;
pub mod spill;
pub mod store;
pub mod versions;
pub mod walk;
pub mod watch;

pub use error::{Error, Result};
