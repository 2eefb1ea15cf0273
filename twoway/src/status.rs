//! `twoway --status [--home DIR] [--json]` (issue 16, points 8 and 9): for each pair and
//! each protected directory of the home, the last pass (from the status files the passes
//! write, see `synccli::status`), whether a safety rail is blocking it and since when, the
//! versions (`latest`/`previous` from each manifest), the undo generations, the disk used by
//! the home and the pids of the running processes (from the locks). It takes no lock and
//! writes nothing: not even a log file.
//!
//! [`gather`] reads the home; [`HomeStatus::to_json`] and [`HomeStatus::render`] are pure.

use std::collections::HashSet;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use synccli::output;
use synccli::status::{PassResult, PassStatus};
use synccore::error::{Error, Quoted, Result};
use synccore::fsio::Root;
use synccore::lock;
use synccore::versions::manifest::{Manifest, SlotRecord};
use synccore::versions::{Layout, undo};

use crate::recovery::info;

/// What `--status` shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HomeStatus {
    pub home: PathBuf,
    /// Bytes the home takes on disk (each hard-linked file once).
    pub disk_bytes: u64,
    pub pairs: Vec<PairStatus>,
    pub dirs: Vec<DirStatus>,
}

/// One pair (`<home>/pairs/<id>`).
#[derive(Debug, Clone, PartialEq)]
pub struct PairStatus {
    pub id: String,
    /// Sides A and B as recorded in the base (`None` before a first real pass).
    pub sides: Option<(PathBuf, PathBuf)>,
    pub last_pass: Option<PassStatus>,
    /// The twoway running the pair, from its lock.
    pub pid: Option<u32>,
}

/// One protected directory (from `.info.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct DirStatus {
    pub path: PathBuf,
    pub partner: PathBuf,
    pub versions: PathBuf,
    pub latest: Option<SlotRecord>,
    pub previous: Option<SlotRecord>,
    /// Undo generations, oldest first.
    pub undo: Vec<String>,
    /// The last versioning pass.
    pub last_pass: Option<PassStatus>,
    /// The oneway versioning it (or a restore), from the versions lock.
    pub pid: Option<u32>,
    /// A manifest or register that could not be read.
    pub problem: Option<String>,
}

/// Reads the status of everything in `home` (canonical). A missing home is bad input.
pub fn gather(home: &Path) -> Result<HomeStatus> {
    let root = Root::open(home)?;
    let mut status =
        HomeStatus { home: home.to_path_buf(), disk_bytes: disk_usage(home), ..HomeStatus::default() };
    let mut ids: Vec<String> = match root.entries(Path::new("pairs")) {
        Ok(names) => names.into_iter().filter_map(|n| n.into_string().ok()).collect(),
        Err(Error::Missing { .. }) => Vec::new(),
        Err(err) if err.io_kind() == Some(std::io::ErrorKind::NotFound) => Vec::new(),
        Err(err) => return Err(err),
    };
    ids.sort();
    for id in ids {
        let dir = Path::new("pairs").join(&id);
        let state = crate::base::read_header(&root, &dir.join("state.json"));
        status.pairs.push(PairStatus {
            sides: state,
            last_pass: synccli::status::load(&root, &dir.join(synccli::status::FILE_NAME)),
            pid: lock::holder(&home.join(&dir).join("lock")).and_then(|h| h.pid),
            id,
        });
    }
    let register = info::load_info(&info::info_path(home))?;
    for (path, entry) in register.dirs {
        status.dirs.push(dir_status(path, entry));
    }
    Ok(status)
}

fn dir_status(path: PathBuf, entry: info::Protected) -> DirStatus {
    let layout = Layout::at(&entry.versions);
    let mut d = DirStatus {
        path,
        partner: entry.partner,
        versions: entry.versions,
        latest: None,
        previous: None,
        undo: Vec::new(),
        last_pass: None,
        pid: lock::holder(&layout.lock()).and_then(|h| h.pid),
        problem: None,
    };
    let v = match layout.open(false) {
        Ok(Some(v)) => v,
        Ok(None) => return d,
        Err(err) => {
            d.problem = Some(err.to_string());
            return d;
        }
    };
    match Manifest::load(&v) {
        Ok(Some(m)) => (d.latest, d.previous) = (m.latest, m.previous),
        Ok(None) => {}
        Err(err) => d.problem = Some(err.to_string()),
    }
    d.undo = undo::list(&v).unwrap_or_default().iter().map(ToString::to_string).collect();
    if let Ok(root) = Root::open(layout.root()) {
        d.last_pass = synccli::status::load(&root, &synccli::status::versions_status_rel(&layout));
    }
    d
}

/// Bytes allocated below `dir`, each inode once (versions share files by hard links), never
/// following a symlink. What cannot be read is left out.
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else { continue };
            if seen.insert((meta.dev(), meta.ino())) {
                total += meta.blocks() * 512;
            }
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

impl HomeStatus {
    /// The status as one JSON object (`twoway --status --json`; docs/formats.md).
    pub fn to_json(&self) -> Value {
        let pairs: Vec<Value> = self
            .pairs
            .iter()
            .map(|p| {
                json!({
                    "id": p.id,
                    "a": p.sides.as_ref().map(|(a, _)| output::path(a)),
                    "b": p.sides.as_ref().map(|(_, b)| output::path(b)),
                    "last_pass": p.last_pass,
                    "blocked": p.last_pass.as_ref().and_then(|s| s.blocked.as_ref()),
                    "pid": p.pid,
                })
            })
            .collect();
        let dirs: Vec<Value> = self
            .dirs
            .iter()
            .map(|d| {
                json!({
                    "path": output::path(&d.path),
                    "partner": output::path(&d.partner),
                    "versions": output::path(&d.versions),
                    "latest": d.latest.as_ref().map(slot_json),
                    "previous": d.previous.as_ref().map(slot_json),
                    "undo": d.undo,
                    "last_pass": d.last_pass,
                    "blocked": d.last_pass.as_ref().and_then(|s| s.blocked.as_ref()),
                    "pid": d.pid,
                    "problem": d.problem,
                })
            })
            .collect();
        json!({
            "home": output::path(&self.home),
            "disk_bytes": self.disk_bytes,
            "pairs": pairs,
            "directories": dirs,
        })
    }

    /// The status as text for a person.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ =
            writeln!(out, "home {}: {} on disk", Quoted(&self.home), output::human_bytes(self.disk_bytes));
        if self.pairs.is_empty() && self.dirs.is_empty() {
            out.push_str("nothing has been synced with this home yet\n");
        }
        for p in &self.pairs {
            let _ = match &p.sides {
                Some((a, b)) => writeln!(out, "pair {}: {} (A) and {} (B)", p.id, Quoted(a), Quoted(b)),
                None => writeln!(out, "pair {}: not synced yet", p.id),
            };
            last_pass_lines(&mut out, "last pass", p.last_pass.as_ref());
            running_line(&mut out, "twoway", p.pid);
        }
        for d in &self.dirs {
            let _ = writeln!(out, "directory {} (synced with {})", Quoted(&d.path), Quoted(&d.partner));
            let _ = writeln!(out, "  versions: {}", Quoted(&d.versions));
            for (name, slot) in [("latest", &d.latest), ("previous", &d.previous)] {
                let _ = match slot {
                    Some(s) => writeln!(
                        out,
                        "  {name}: taken {}, {} files, {}",
                        s.taken,
                        s.files,
                        output::human_bytes(s.bytes)
                    ),
                    None => writeln!(out, "  {name}: none yet"),
                };
            }
            let _ = match d.undo.as_slice() {
                [] => writeln!(out, "  undo generations: none"),
                gens => writeln!(out, "  undo generations: {}", gens.join(", ")),
            };
            last_pass_lines(&mut out, "last versioning pass", d.last_pass.as_ref());
            if let Some(problem) = &d.problem {
                let _ = writeln!(out, "  problem: {problem}");
            }
            running_line(&mut out, "oneway", d.pid);
        }
        out
    }
}

fn slot_json(s: &SlotRecord) -> Value {
    json!({"taken": s.taken, "files": s.files, "bytes": s.bytes, "checksum": s.checksum.to_hex()})
}

fn last_pass_lines(out: &mut String, what: &str, status: Option<&PassStatus>) {
    let Some(s) = status else {
        let _ = writeln!(out, "  {what}: none recorded");
        return;
    };
    let result = match s.result {
        PassResult::Ok => "ok",
        PassResult::Errors => "some entries failed",
        PassResult::Blocked => "BLOCKED by a safety rail",
        PassResult::Failed => "failed",
    };
    let count = |k: &str| s.counts.get(k).and_then(Value::as_u64).unwrap_or(0);
    let _ = writeln!(
        out,
        "  {what}: {} ({:.2} s), {result}, exit {}; {} operations, {} copied, {} failed",
        s.finished,
        s.seconds,
        s.exit,
        count("operations"),
        output::human_bytes(count("bytes")),
        count("failed")
    );
    let _ = if let Some(b) = &s.blocked {
        writeln!(out, "  BLOCKED since {}: {}", b.since, b.reason)
    } else if let Some(err) = &s.error {
        writeln!(out, "  error: {err}")
    } else {
        Ok(())
    };
}

fn running_line(out: &mut String, program: &str, pid: Option<u32>) {
    if let Some(pid) = pid {
        let _ = writeln!(out, "  running: {program} pid {pid}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synccli::status::{Blocked, FORMAT};

    fn blocked_pass() -> PassStatus {
        PassStatus {
            format: FORMAT,
            program: "twoway".into(),
            pid: 7,
            finished: "2026-01-02T03:04:05Z".into(),
            seconds: 0.5,
            result: PassResult::Blocked,
            exit: 3,
            counts: serde_json::Map::new(),
            blocked: Some(Blocked { since: "2026-01-01T00:00:00Z".into(), reason: "empty".into() }),
            error: Some("empty".into()),
        }
    }

    #[test]
    fn a_blocked_pair_is_loud_in_text_and_json() {
        let status = HomeStatus {
            home: "/h".into(),
            disk_bytes: 4096,
            pairs: vec![PairStatus {
                id: "abc".into(),
                sides: Some(("/a".into(), "/b\u{e9}".into())),
                last_pass: Some(blocked_pass()),
                pid: Some(42),
            }],
            dirs: Vec::new(),
        };
        let text = status.render();
        assert!(text.contains("BLOCKED since 2026-01-01T00:00:00Z: empty"), "{text}");
        assert!(text.contains("running: twoway pid 42"), "{text}");
        let j = status.to_json();
        assert_eq!(j["pairs"][0]["blocked"]["since"], "2026-01-01T00:00:00Z");
        assert_eq!(j["pairs"][0]["pid"], 42);
        assert_eq!(j["pairs"][0]["b"], "/b\u{e9}");
        assert_eq!(j["disk_bytes"], 4096);
    }

    #[test]
    fn gathering_an_empty_home_finds_nothing_and_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let status = gather(d.path()).unwrap();
        assert!(status.pairs.is_empty() && status.dirs.is_empty());
        assert!(status.render().contains("nothing has been synced"));
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }
}
