//! The storage interface the copy engine reads through (issue 18, "one pipeline"): where the
//! bytes of a planned copy come from. [`apply`](crate::apply) stages every copy and update
//! through a [`FileSource`] and commits it the one way it always does (temporary in the
//! target's directory, durable, renamed into place), so the planner, the rails, dry-run,
//! logging, progress and the summary never know which store they talk to.
//!
//! The local file system ([`Root`]) is one implementation; `syncremote` has the other (a
//! version in an S3 or SFTP store, its files' bytes in content-addressed objects). What a
//! store cannot do is asked of its capabilities (`syncremote::Capabilities`), not of a URL's
//! scheme. Writing to a remote store is not a sequence of per-path steps (an object store has
//! no rename, no directories and no metadata): `oneway` uploads the objects a plan needs and
//! commits a new manifest, see docs/architecture.md.

use std::fs::File;
use std::path::Path;

use crate::entry::Mtime;
use crate::error::Result;
use crate::fsio::{self, CopyAttrs, Root, StageOutcome};

/// Where a copy's bytes come from.
pub trait FileSource: Sync + std::fmt::Debug {
    /// Stages the content of the file at `rel` (which the plan saw with `expected`: size and
    /// mtime) as a temporary beside `rel` in `to`, with `attrs` and that mtime; see
    /// [`fsio::stage_copy`]. A source that no longer matches `expected` is
    /// [`StageOutcome::SourceChanged`] and nothing is left behind.
    fn stage_file(
        &self,
        to: &Root,
        rel: &Path,
        attrs: CopyAttrs,
        expected: (u64, Mtime),
    ) -> Result<StageOutcome>;
}

impl FileSource for Root {
    fn stage_file(
        &self,
        to: &Root,
        rel: &Path,
        attrs: CopyAttrs,
        expected: (u64, Mtime),
    ) -> Result<StageOutcome> {
        fsio::stage_copy(self, to, rel, attrs, expected)
    }
}

/// How a [`FileSource`] that is not a local tree writes a file's bytes into a staged
/// temporary: `write(file, temp_path)` returns the bytes written.
pub type WriteInto<'a> = dyn FnMut(&mut File, &Path) -> Result<u64> + 'a;
