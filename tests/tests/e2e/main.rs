//! End-to-end tests: the real `oneway` and `twoway` binaries on real temporary trees.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod oneway_crash;
mod oneway_inputs;
mod oneway_mirror;
mod oneway_versioned;
