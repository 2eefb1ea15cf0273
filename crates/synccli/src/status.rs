//! The status file of a pair or a protected directory (issue 16, points 8 and 9): what the
//! last pass did and whether a safety rail has been blocking it, and since when, so that
//! `twoway --status` can tell without asking a running process. `twoway` writes one per pair
//! (`<home>/pairs/<id>/status.json`), `oneway --versioned` one per versions directory
//! (`__status__/<name>.json` beside `__versions__`, see [`versions_status_rel`]), after a pass that did
//! something or ended otherwise than the recorded one (never in a dry run), atomically
//! through the directory's descriptor like the programs' other files. docs/formats.md has
//! the format.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use synccore::apply::ApplyStats;
use synccore::error::Result;
use synccore::fsio::Root;

/// The name of a pair's status file, beside its base.
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

impl PassStatus {
    /// True when `self` tells nothing that `previous` does not: a pass that did nothing and
    /// ended as the recorded one did. Such a pass leaves the file as it is (SPEC section 3:
    /// a pass that finds nothing to do writes nothing; an idle periodic run would otherwise
    /// rewrite it every interval).
    pub fn adds_nothing_to(&self, previous: &PassStatus) -> bool {
        let idle = self.counts.get("operations").and_then(Value::as_u64) == Some(0)
            && self.counts.get("failed").and_then(Value::as_u64) == Some(0);
        idle && self.result == previous.result
            && self.exit == previous.exit
            && self.blocked == previous.blocked
            && self.error == previous.error
            && self.program == previous.program
            && self.counts == previous.counts
    }
}

/// Where `oneway --versioned` records its passes, relative to the versions root ROOT (for
/// twoway's children, the home): `__status__/<name>.json`, beside `__versions__` rather than
/// in it, so that the versions' directories change only when a version does and
/// `__versions__` holds nothing but versions.
pub fn versions_status_rel(layout: &synccore::versions::Layout) -> std::path::PathBuf {
    let mut name = layout.rel().file_name().unwrap_or_default().to_owned();
    name.push(".json");
    Path::new(STATUS_DIR).join(name)
}

/// The directory of the versions' status files below ROOT.
pub const STATUS_DIR: &str = "__status__";

/// Records how a pass ended at `rel` below `root`, keeping the blocked-since time of the
/// status it replaces; an idle pass that ends as the last recorded one writes nothing. A
/// failure is logged, never fatal: the pass is over either way.
pub fn record(root: &Root, rel: &Path, ending: &Ending<'_>) {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let previous = load(root, rel);
    let status = PassStatus::after(previous.as_ref(), ending, now);
    if previous.is_some_and(|p| status.adds_nothing_to(&p)) {
        return;
    }
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
    fn an_idle_pass_like_the_last_one_writes_nothing() {
        let stats = ApplyStats::default();
        let ok = Ending { program: "twoway", exit: 0, error: None, stats: &stats, seconds: 0.1 };
        let first = PassStatus::after(None, &ok, "T1".into());
        assert!(PassStatus::after(Some(&first), &ok, "T2".into()).adds_nothing_to(&first));
        let mut busy = ApplyStats::default();
        busy.done.insert(synccore::plan::StepKind::Copy, 1);
        let did = Ending { stats: &busy, ..ok };
        assert!(!PassStatus::after(Some(&first), &did, "T3".into()).adds_nothing_to(&first));
        let err = rail();
        let blocked = Ending { exit: 3, error: Some(&err), ..ok };
        let b1 = PassStatus::after(Some(&first), &blocked, "T4".into());
        assert!(!b1.adds_nothing_to(&first));
        assert!(PassStatus::after(Some(&b1), &blocked, "T5".into()).adds_nothing_to(&b1));
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
