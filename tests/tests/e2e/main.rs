//! End-to-end tests: the real `oneway` and `twoway` binaries on real temporary trees.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod faults;
mod ignore;
mod metadata;
mod oneway_crash;
mod oneway_inputs;
mod oneway_mirror;
mod oneway_versioned;
mod oneway_versions_journal;
mod remote;
mod remote_oneway;
mod renames;
mod security;
mod sparse_and_checksum;
mod twoway_convergence;
mod twoway_merge;
mod twoway_model;
mod twoway_recovery;
mod twoway_restore;
mod twoway_safety;
mod watch;
