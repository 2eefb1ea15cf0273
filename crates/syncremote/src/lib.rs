//! `syncremote`: remote stores for the sync pipeline (issue 18). A SOURCE or BACKUP may be
//! `s3://bucket/prefix` or `sftp://[user@]host[:port]/path`; this crate reaches them through
//! Apache OpenDAL and keeps there a layout that never loses a byte on a store without rename:
//! content-addressed objects, one manifest per version (paths, kinds, modes, mtimes,
//! symlinks, empty directories, object ids) written create-only, and a head switched
//! conditionally, with garbage collected last (see [`repo`] and docs/formats.md).
//!
//! It is a crate of its own rather than a module of `synccore` because OpenDAL brings an HTTP
//! stack, TLS, an SSH client and a tokio runtime (about 200 crates): `twoway`, and every
//! build of `synccore`'s own tests, stay free of them. Like `synccore`, it never parses
//! arguments or prints; its errors are `synccore::Error`s (`Remote`, `RemoteChanged`: exit 1).

pub mod files;
pub mod format;
pub mod location;
pub mod repo;
pub mod store;

pub use files::RemoteFiles;
pub use format::{ObjectId, RemoteEntry};
pub use location::{Location, Service, is_remote};
pub use repo::{Entries, GcStats, Head, Keep, Present, Remote, Slot, Uploaded};
pub use store::{Capabilities, RequestStats};
