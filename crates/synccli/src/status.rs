//! The status file of a pair or a protected directory (issue 16, points 8 and 9): what the
//! last pass did and whether a safety rail has been blocking it, and since when, so that
//! `twoway --status` can tell without asking a running process. `twoway` writes one per pair
//! (`<home>/pairs/<id>/status.json`), `oneway --versioned` one per versions directory
//! (`__versions__/<name>/status.json`), after every pass but a dry run, atomically through
//! the directory's descriptor like the programs' other files. docs/formats.md has the format.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use synccore::apply::ApplyStats;
use synccore::error::Result;
use synccore::fsio::Root;

/// The name of the file, beside the pair's base or in the versions directory.
pub const FILE_NAME: &str = "status.json";
/// The format this code writes.
pub const FORMAT: u32 = 1;

/// How the last pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PassResult {
    /// Everything done (exit 0).
    Ok,
    /// Some entries failed (exit 1).
    Errors,
    /// A safety rail stopped the pass before it changed anything (exit 3).
    Blocked,
    /// Another error ended the pass.
    Failed,
}

/// Since when a rail has stopped every pass, and why (the last pass's words).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    /// RFC 3339 (UTC): the end of the first pass of the run of blocked passes.
    pub since: String,
    pub reason: String,
}

/// The contents of a status file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassStatus {
    pub format: u32,
    /// `twoway` or `oneway`.
    pub program: String,
    /// The process that ran the pass.
    pub pid: u32,
    /// When the pass ended: RFC 3339, UTC.
    pub finished: String,
    pub seconds: f64,
    pub result: PassResult,
    /// The pass's exit status.
    pub exit: u8,
    /// What the pass did: `operations`, every step kind, `bytes`, `failed`, `skipped`, and
    /// the program's own counts (`conflicts`, `rotated`).
    #[serde(default)]
    pub counts: Map<String, Value>,
    /// Set while a rail blocks the passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<Blocked>,
    /// The error that ended or stopped the pass, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How a pass ended, as its caller knows it.
#[derive(Debug, Clone, Copy)]
pub struct Ending<'a> {
    pub program: &'static str,
    pub exit: u8,
    /// The error that ended it (`None`: it ran to its end).
    pub error: Option<&'a synccore::Error>,
    pub stats: &'a ApplyStats,
    pub seconds: f64,
}

impl PassStatus {
    /// The status after a pass that ended at `now`, given the one before it (which keeps
    /// `blocked.since` while the same kind of stop goes on).
    pub fn after(previous: Option<&PassStatus>, ending: &Ending<'_>, now: String) -> PassStatus {
        let rail = matches!(ending.error, Some(synccore::Error::Aborted(_)));
        let result = match (ending.error, ending.exit) {
            _ if rail => PassResult::Blocked,
            (Some(_), _) => PassResult::Failed,
            (None, 0) => PassResult::Ok,
            (None, _) => PassResult::Errors,
        };
        let error = ending.error.map(ToString::to_string);
        let blocked = rail.then(|| Blocked {
            since: previous.and_then(|p| p.blocked.as_ref()).map_or_else(|| now.clone(), |b| b.since.clone()),
            reason: error.clone().unwrap_or_default(),
        });
        PassStatus {
            format: FORMAT,
            program: ending.program.to_owned(),
            pid: std::process::id(),
            finished: now,
            seconds: (ending.seconds * 1000.0).round() / 1000.0,
            result,
            exit: ending.exit,
            counts: crate::output::counts(ending.stats),
            blocked,
            error,
        }
    }
}

/// Reads the status file at `rel` below `root`; `None` when missing or unreadable (a status
/// file is only ever a report: a bad one is replaced by the next pass).
pub fn load(root: &Root, rel: &Path) -> Option<PassStatus> {
    let bytes = root.read(rel).ok()??;
    serde_json::from_slice(&bytes).ok()
}

/// Records how a pass ended at `rel` below `root`, keeping the blocked-since time of the
/// status it replaces. A failure is logged, never fatal: the pass is over either way.
pub fn record(root: &Root, rel: &Path, ending: &Ending<'_>) {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let status = PassStatus::after(load(root, rel).as_ref(), ending, now);
    let written = serde_json::to_vec(&status)
        .map_err(|e| synccore::Error::Setup { what: "the status file", reason: e.to_string() })
        .and_then(|mut bytes| {
            bytes.push(b'\n');
            write(root, rel, &bytes)
        });
    if let Err(err) = written {
        log::warn!("cannot record the pass's status: {err}");
    }
}

fn write(root: &Root, rel: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = rel.parent() {
        root.create_dirs(parent)?;
    }
    root.write_atomic(rel, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use synccore::error::Rail;

    fn rail() -> synccore::Error {
        synccore::Error::Aborted(Rail::EmptySide { empty: "a".into(), other: "b".into() })
    }

    #[test]
    fn a_rail_blocks_since_its_first_pass_and_a_good_pass_clears_it() {
        let stats = ApplyStats::default();
        let err = rail();
        let blocked = Ending { program: "twoway", exit: 3, error: Some(&err), stats: &stats, seconds: 0.1 };
        let first = PassStatus::after(None, &blocked, "T1".into());
        assert_eq!(first.result, PassResult::Blocked);
        assert_eq!(first.blocked.as_ref().map(|b| b.since.as_str()), Some("T1"));
        let second = PassStatus::after(Some(&first), &blocked, "T2".into());
        assert_eq!(second.blocked.as_ref().map(|b| b.since.as_str()), Some("T1"));
        assert_eq!(second.finished, "T2");
        assert!(second.blocked.unwrap().reason.contains("refusing to sync"));
        let ok = Ending { program: "twoway", exit: 0, error: None, stats: &stats, seconds: 0.1 };
        let cleared = PassStatus::after(Some(&first), &ok, "T3".into());
        assert_eq!((cleared.result, cleared.blocked), (PassResult::Ok, None));
        let errors = Ending { exit: 1, ..ok };
        assert_eq!(PassStatus::after(None, &errors, "T4".into()).result, PassResult::Errors);
    }

    #[test]
    fn a_status_round_trips_through_its_file() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::open(d.path()).unwrap();
        let stats = ApplyStats::default();
        let ok = Ending { program: "oneway", exit: 0, error: None, stats: &stats, seconds: 0.0 };
        record(&root, Path::new("pairs/x/status.json"), &ok);
        let back = load(&root, Path::new("pairs/x/status.json")).unwrap();
        assert_eq!(
            (back.program.as_str(), back.result, back.pid),
            ("oneway", PassResult::Ok, std::process::id())
        );
        assert!(back.counts.contains_key("copy"));
    }
}
