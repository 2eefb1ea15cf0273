//! `--json` (issue 16, point 4): JSON Lines on stdout for scripts and monitoring. One object
//! per operation, per error and warning, per conflict and per pass (`summary`), each with an
//! `"event"` field; docs/formats.md has the schema. While it is on, stdout carries nothing
//! else (the console's human lines go to stderr, a dry run's plan is not printed as text).
//!
//! The event of an operation is named by [`StepKind::word`], so a new kind of step (the
//! renames work's moves) becomes an event without a change here; its extra fields come from
//! [`step_fields`]. Paths are raw bytes, encoded as in every file the programs write
//! ([`Bytes`]: a string when UTF-8, else `{"hex": "…"}`).

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Value, json};
use synccore::apply::ApplyStats;
use synccore::jsonbytes::Bytes;
use synccore::plan::{Action, Step, StepKind};
use synccore::relpath::RelPath;

static JSON: AtomicBool = AtomicBool::new(false);

/// Turns JSON Lines on stdout on (once, at start-up, from `--json`).
pub fn set_json(on: bool) {
    JSON.store(on, Ordering::Relaxed);
}

/// True when `--json` is on: events go to stdout and nothing else does.
pub fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// Writes one event as a line on stdout when `--json` is on; `event` makes it (only then:
/// a pass of 200,000 operations builds no JSON it does not write). A closed stdout
/// (`| head`) never stops the program: the write error is dropped, like the console's.
pub fn emit(event: impl FnOnce() -> Value) {
    if !json() {
        return;
    }
    let mut line = event().to_string();
    line.push('\n');
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

/// `1.50 MiB`: bytes for a person.
pub fn human_bytes(n: u64) -> String {
    indicatif::BinaryBytes(n).to_string()
}

/// A relative path as JSON.
pub fn rel(path: &RelPath) -> Value {
    bytes_value(&Bytes::of(path.as_bytes()))
}

/// An absolute or user-given path as JSON.
pub fn path(path: &Path) -> Value {
    bytes_value(&Bytes::of_path(path))
}

fn bytes_value(bytes: &Bytes) -> Value {
    serde_json::to_value(bytes).unwrap_or(Value::Null)
}

/// Where an operation happened and whether it was only planned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Origin {
    /// twoway's side that the step changes (`'a'` or `'b'`); `None` for oneway.
    pub side: Option<char>,
    /// A dry run's planned step (`"would": true`).
    pub would: bool,
}

/// The event of one operation: `{"event": <kind>, "path": …, …fields, "side"?, "would"?}`.
pub fn step_event(step: &Step, origin: Origin) -> Value {
    let mut map = Map::new();
    map.insert("event".into(), step.kind().word().into());
    map.insert("path".into(), rel(&step.path));
    map.extend(step_fields(step));
    add_origin(&mut map, origin);
    Value::Object(map)
}

/// The fields of a step besides its kind and path. Kinds without extra fields (`mkdir`,
/// `rmdir`, `delete`, `cleanup`, and any kind added later) get none.
pub fn step_fields(step: &Step) -> Map<String, Value> {
    let mut map = Map::new();
    match &step.action {
        Action::Copy { size, mode, .. } | Action::Update { size, mode, .. } => {
            map.insert("bytes".into(), (*size).into());
            map.insert("mode".into(), (*mode).into());
        }
        Action::Link { target, .. } => {
            map.insert("target".into(), bytes_value(&Bytes::of(target)));
        }
        Action::Meta { mode, mtime, owner, .. } => {
            if let Some(mode) = mode {
                map.insert("mode".into(), (*mode).into());
            }
            if let Some(m) = mtime {
                map.insert("mtime".into(), json!([m.secs, m.nanos]));
            }
            if let Some(o) = owner {
                map.insert("owner".into(), json!([o.uid, o.gid]));
            }
        }
        Action::Rename { to, .. } | Action::Move { to, .. } => {
            map.insert("to".into(), rel(to));
        }
        Action::HardLink { existing } => {
            map.insert("existing".into(), rel(existing));
        }
        _ => {}
    }
    map
}

fn add_origin(map: &mut Map<String, Value>, origin: Origin) {
    if let Some(side) = origin.side {
        map.insert("side".into(), side.to_string().into());
    }
    if origin.would {
        map.insert("would".into(), true.into());
    }
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Warning,
    Error,
}

/// A problem: `{"event": "error"|"warning", "message": …, "path"?, "op"?, "side"?}`. `op` is
/// the kind of step that failed or was skipped, when a step did.
pub fn problem_event(
    level: Level,
    message: &str,
    path: Option<Value>,
    op: Option<StepKind>,
    side: Option<char>,
) -> Value {
    let mut map = Map::new();
    let event = if level == Level::Error { "error" } else { "warning" };
    map.insert("event".into(), event.into());
    if let Some(path) = path {
        map.insert("path".into(), path);
    }
    if let Some(op) = op {
        map.insert("op".into(), op.word().into());
    }
    add_origin(&mut map, Origin { side, would: false });
    map.insert("message".into(), message.into());
    Value::Object(map)
}

/// The counts of a pass (or a run): every kind of step by its word, the bytes copied, what
/// failed and what was left for the next pass.
pub fn counts(stats: &ApplyStats) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("operations".into(), stats.operations().into());
    for kind in StepKind::ALL {
        map.insert(kind.word().into(), stats.done.get(&kind).copied().unwrap_or(0).into());
    }
    map.insert("bytes".into(), stats.copied_bytes.into());
    map.insert("failed".into(), stats.failed.into());
    map.insert("skipped".into(), stats.skipped.into());
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use synccore::entry::{Mtime, Owner};

    fn step(path: &[u8], action: Action) -> Step {
        Step { path: RelPath::from_bytes(path), action }
    }

    #[test]
    fn an_operation_is_its_kind_its_path_and_its_fields() {
        let owner = Owner { uid: 1, gid: 2 };
        let copy = step(
            b"a/b.txt",
            Action::Copy { size: 12, mode: 0o644, mtime: Mtime { secs: 0, nanos: 0 }, owner },
        );
        assert_eq!(
            step_event(&copy, Origin::default()),
            json!({"event": "copy", "path": "a/b.txt", "bytes": 12, "mode": 0o644})
        );
        let rename = step(
            b"x",
            Action::Rename {
                to: RelPath::from_bytes(b"y\xff"),
                was: synccore::plan::Stamp { size: 0, mtime: Mtime { secs: 0, nanos: 0 }, ino: 0 },
            },
        );
        assert_eq!(
            step_event(&rename, Origin { side: Some('b'), would: true }),
            json!({"event": "rename", "path": "x", "to": {"hex": "79ff"}, "side": "b", "would": true})
        );
        assert_eq!(
            step_event(&step(b"d", Action::Rmdir), Origin::default()),
            json!({"event": "rmdir", "path": "d"})
        );
        // The renames work's moves: the kind's word, and where to.
        let was = synccore::plan::Stamp { size: 0, mtime: Mtime { secs: 0, nanos: 0 }, ino: 0 };
        let moved = step(b"old", Action::Move { to: RelPath::from_bytes(b"new/old"), was });
        assert_eq!(
            step_event(&moved, Origin::default()),
            json!({"event": "move", "path": "old", "to": "new/old"})
        );
    }

    #[test]
    fn problems_name_their_path_op_and_side() {
        let e = problem_event(
            Level::Error,
            "boom",
            Some(rel(&RelPath::from_bytes(b"f"))),
            Some(StepKind::Copy),
            Some('a'),
        );
        assert_eq!(e, json!({"event": "error", "path": "f", "op": "copy", "side": "a", "message": "boom"}));
        assert_eq!(
            problem_event(Level::Warning, "w", None, None, None),
            json!({"event": "warning", "message": "w"})
        );
    }

    #[test]
    fn counts_name_every_kind() {
        let mut stats = ApplyStats::default();
        stats.done.insert(StepKind::Copy, 3);
        stats.copied_bytes = 7;
        let c = counts(&stats);
        assert_eq!(c["operations"], 3);
        assert_eq!(c["copy"], 3);
        assert_eq!(c["bytes"], 7);
        for kind in StepKind::ALL {
            assert!(c.contains_key(kind.word()), "{}", kind.word());
        }
    }
}
