//! A remote version as the copy engine's [`FileSource`] (issue 18: one storage interface
//! behind scan -> plan -> apply): `apply` stages a restored file by downloading its object
//! into a temporary beside the target, checked against the object's SHA-256 and the size the
//! plan saw, and commits it like any local copy (durable, then renamed into place), so a
//! pull never leaves a partial file.

use std::collections::HashMap;
use std::path::Path;

use synccore::Result;
use synccore::entry::Mtime;
use synccore::fsio::{self, CopyAttrs, Root, StageOutcome};
use synccore::relpath::RelPath;
use synccore::store::FileSource;

use crate::format::{ObjectId, RemoteEntry};
use crate::repo::Remote;

/// The files of one remote version: each path's object.
#[derive(Debug)]
pub struct RemoteFiles<'r> {
    remote: &'r Remote,
    objects: HashMap<RelPath, ObjectId>,
}

impl<'r> RemoteFiles<'r> {
    /// The files of the version whose entries are `entries`.
    pub fn new<'e>(remote: &'r Remote, entries: impl IntoIterator<Item = &'e RemoteEntry>) -> Self {
        let objects = entries.into_iter().filter_map(|e| Some((e.path.clone(), e.object?))).collect();
        RemoteFiles { remote, objects }
    }

    /// The object holding the file at `rel`, if the version has one there.
    pub fn object(&self, rel: &RelPath) -> Option<ObjectId> {
        self.objects.get(rel).copied()
    }
}

impl FileSource for RemoteFiles<'_> {
    fn stage_file(
        &self,
        to: &Root,
        rel: &Path,
        attrs: CopyAttrs,
        expected: (u64, Mtime),
    ) -> Result<StageOutcome> {
        let Some(id) = self.object(&RelPath::from_path(rel)) else {
            return Ok(StageOutcome::SourceChanged);
        };
        fsio::stage_written(to, rel, attrs, expected, &mut |file, temp| self.remote.download(&id, file, temp))
    }
}
