//! The safety rails of SPEC section 5, in one place for every pass (the mirror, the versioned
//! pass and twoway): a pass that would empty or gut a side aborts before it changes anything,
//! with exit code 3, unless the user says `--force`.
//!
//! - **Empty side**: the side that should hold the data is empty or missing (an unmounted
//!   disk) while the other side, its versions or the base has files.
//! - **Max delete**: the pass would delete more than a share of a side's files (moves are not
//!   deletes). Below [`MIN_FILES_FOR_DELETE_RAIL`] files the rail does not apply.

use std::path::Path;

use crate::error::{Error, Rail, Result};

/// Below this many files on a side, the max-delete rail does not apply (SPEC section 5).
pub const MIN_FILES_FOR_DELETE_RAIL: usize = 10;

/// The default of `--max-delete`, in percent.
pub const DEFAULT_MAX_DELETE_PERCENT: u8 = 50;

/// The rails a pass checks, as the command line set them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rails {
    /// Abort when more than this percentage of a side's files would be deleted.
    pub max_delete_percent: u8,
    /// Carry out a pass that a rail would abort (`--force`).
    pub force: bool,
}

impl Default for Rails {
    fn default() -> Self {
        Rails { max_delete_percent: DEFAULT_MAX_DELETE_PERCENT, force: false }
    }
}

impl Rails {
    /// The max-delete rail: `deletes` of the `files` files (and symlinks) on `side`.
    pub fn check_deletes(&self, deletes: usize, files: usize, side: &Path) -> Result<()> {
        if self.force || files < MIN_FILES_FOR_DELETE_RAIL {
            return Ok(());
        }
        if deletes * 100 > usize::from(self.max_delete_percent) * files {
            return Err(Error::Aborted(Rail::TooManyDeletes {
                side: side.into(),
                deletes,
                files,
                max_percent: self.max_delete_percent,
            }));
        }
        Ok(())
    }

    /// The empty-side rail: `empty` holds nothing (and nothing failed to be read there) while
    /// the data `other` stands for (a side, the versions, the base) holds files. `--force`
    /// overrides it where the caller allows (`overridable`: a versioned pass never lets an
    /// empty SOURCE replace its versions).
    pub fn check_empty_side(
        &self,
        is_empty: bool,
        other_has_files: bool,
        overridable: bool,
        empty: &Path,
        other: &Path,
    ) -> Result<()> {
        if is_empty && other_has_files && !(overridable && self.force) {
            return Err(empty_side(empty, other));
        }
        Ok(())
    }
}

/// The empty-side rail's error for `empty` against `other`.
pub fn empty_side(empty: &Path, other: &Path) -> Error {
    Error::Aborted(Rail::EmptySide { empty: empty.into(), other: other.into() })
}

/// True when `err` says a root is missing or not a directory (a vanished mount point).
pub fn is_missing(err: &Error) -> bool {
    match err {
        Error::Missing { .. } | Error::NotADirectory { .. } => true,
        _ => err.io_kind() == Some(std::io::ErrorKind::NotFound),
    }
}

/// A root that cannot be opened because it is missing is the empty-side rail when the other
/// side (`other_has_files`) has something to lose; any other error stays what it is.
pub fn missing_root(err: Error, other_has_files: bool, empty: &Path, other: &Path) -> Error {
    if is_missing(&err) && other_has_files { empty_side(empty, other) } else { err }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_delete_counts_a_share_of_at_least_ten_files() {
        let rails = Rails::default();
        let side = Path::new("/b");
        assert!(rails.check_deletes(5, 10, side).is_ok(), "exactly half");
        assert!(matches!(rails.check_deletes(6, 10, side), Err(Error::Aborted(_))));
        assert!(rails.check_deletes(9, 9, side).is_ok(), "below ten files the rail is off");
        assert!(Rails { force: true, ..rails }.check_deletes(10, 10, side).is_ok());
        assert!(Rails { max_delete_percent: 0, ..rails }.check_deletes(1, 10, side).is_err());
        let err = rails.check_deletes(15, 20, side).unwrap_err();
        assert_eq!(err.exit_code(), 3);
        assert!(err.to_string().contains("would delete 15 of 20 files"), "{err}");
    }

    #[test]
    fn an_empty_side_aborts_unless_forced_where_forcing_is_allowed() {
        let (a, b) = (Path::new("/a"), Path::new("/b"));
        let rails = Rails::default();
        assert!(rails.check_empty_side(true, true, true, a, b).is_err());
        assert!(rails.check_empty_side(true, false, true, a, b).is_ok(), "nothing to protect");
        assert!(rails.check_empty_side(false, true, true, a, b).is_ok());
        let forced = Rails { force: true, ..rails };
        assert!(forced.check_empty_side(true, true, true, a, b).is_ok());
        assert!(forced.check_empty_side(true, true, false, a, b).is_err(), "versions are never overridden");
    }

    #[test]
    fn a_missing_root_is_the_rail_only_when_there_is_something_to_lose() {
        let (a, b) = (Path::new("/a"), Path::new("/b"));
        let missing = || Error::Missing { path: a.into() };
        assert!(matches!(missing_root(missing(), true, a, b), Error::Aborted(Rail::EmptySide { .. })));
        assert!(matches!(missing_root(missing(), false, a, b), Error::Missing { .. }));
        let other = Error::Interrupted;
        assert!(matches!(missing_root(other, true, a, b), Error::Interrupted));
    }
}
