//! Support for the end-to-end tests: find (and build) the real binaries, build trees from a
//! compact spec with explicit modes and nanosecond mtimes (never by sleeping), snapshot a tree
//! byte-exactly with `symlink_metadata`, and compare two trees both ways.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

pub mod gitrules;
pub mod race;
pub mod servers;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File, FileTimes, Permissions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The path of a workspace binary (`oneway`, `twoway`), built once per test run.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        // `E2E_BIN_DIR` runs the suite against other builds (a release build, or an older
        // commit's binaries to show that a new test fails there).
        if let Some(dir) = std::env::var_os("E2E_BIN_DIR") {
            return PathBuf::from(dir);
        }
        // Tests live in target/<profile>/deps; the binaries in target/<profile>.
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "oneway", "-p", "twoway"]);
        if profile_dir.file_name() == Some(OsStr::new("release")) {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cannot run cargo to build the binaries");
        assert!(status.success(), "building the binaries failed");
        profile_dir
    });
    dir.join(name)
}

/// A command for a workspace binary, run in `cwd` (so default log files land there).
pub fn cmd(name: &str, cwd: &Path) -> Command {
    let mut c = Command::new(bin(name));
    c.current_dir(cwd);
    c
}

/// Runs a command to completion, capturing output.
#[must_use = "check the exit status: a setup step that failed unnoticed makes a test fail for the wrong reason"]
pub fn run(mut c: Command) -> Output {
    c.output().expect("cannot run binary")
}

/// The `strace` program, with which crash tests kill a binary at an exact system call. `None`
/// (the reason printed: the test then skips) when a developer runs the tests without it; in
/// CI (`CI` set and not empty, as `.ci/run` exports it) its absence fails the test instead,
/// because a crash test that silently skips proves nothing.
pub fn strace() -> Option<PathBuf> {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("strace")).find(|p| p.is_file()));
    // A strace that cannot trace (ptrace forbidden, as in some containers) is as good as none.
    let problem = match &found {
        None => "strace is not installed (apt-get install strace)",
        Some(strace) => {
            let works = Command::new(strace)
                .args(["-f", "-qq", "-o", "/dev/null", "true"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if works {
                return found;
            }
            "strace cannot trace processes here (is ptrace permitted?)"
        }
    };
    assert!(!ci, "{problem}: CI must provide it (.ci/run installs strace); the crash tests need it");
    // Straight to the file descriptor: the test harness captures `eprintln!` of passing
    // tests, and a skip nobody sees looks like a pass.
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {problem}; this crash test kills the program at an exact system call with it"
    );
    None
}

/// Runs `c` (a [`cmd`]) under `strace`, which kills it with SIGKILL on entering its `n`-th
/// call of `syscall`, and returns the output; [`killed`] tells whether the kill landed or the
/// program finished first. strace counts calls per thread, and our programs commit (rename)
/// on their main thread only, so the N-th call is the same commit point on every machine,
/// however fast (hardening issue, part C: a kill after a fixed sleep missed the pass on fast
/// machines). `-e trace=<syscall> -o /dev/null` rather than `-e trace=none`: strace 6.1 does not
/// inject into calls it does not trace.
#[must_use = "check `killed`: a kill that did not land proves nothing"]
pub fn run_killed_at(strace: &Path, c: &Command, syscall: &str, n: u32) -> Output {
    let mut s = Command::new(strace);
    s.args(["-f", "-o", "/dev/null", "-e"])
        .arg(format!("trace={syscall}"))
        .arg("-e")
        .arg(format!("inject={syscall}:signal=SIGKILL:when={n}"))
        .arg("--")
        .arg(c.get_program())
        .args(c.get_args());
    if let Some(dir) = c.get_current_dir() {
        s.current_dir(dir);
    }
    for (key, value) in c.get_envs() {
        match value {
            Some(value) => s.env(key, value),
            None => s.env_remove(key),
        };
    }
    run(s)
}

/// How many times a run of `c` (to its end, under `strace`) enters `syscall`: where the kill
/// points of a pass lie, counted on the very pass instead of assumed.
pub fn count_calls(strace: &Path, c: &Command, syscall: &str) -> u32 {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut s = Command::new(strace);
    s.args(["-f", "-qq", "-o"]).arg(log.path()).arg("-e").arg(format!("trace={syscall}")).arg("--");
    s.arg(c.get_program()).args(c.get_args());
    if let Some(dir) = c.get_current_dir() {
        s.current_dir(dir);
    }
    for (key, value) in c.get_envs() {
        match value {
            Some(value) => s.env(key, value),
            None => s.env_remove(key),
        };
    }
    let out = run(s);
    assert!(out.status.success(), "the counted run failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = fs::read_to_string(log.path()).unwrap();
    text.lines().filter(|l| l.contains(&format!("{syscall}("))).count() as u32
}

/// True when a run of [`run_killed_at`] was killed at its system call (strace dies of the
/// same signal as its tracee); false when the program finished before reaching it.
pub fn killed(out: &Output) -> bool {
    use std::os::unix::process::ExitStatusExt;
    out.status.signal() == Some(9)
}

/// Joins raw path bytes onto a root.
pub fn at(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

/// Writes a file with content, mode and mtime (seconds, nanoseconds), creating parents.
pub fn file(root: &Path, rel: &[u8], content: &[u8], mode: u32, mtime: (i64, u32)) {
    let p = at(root, rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, content).unwrap();
    fs::set_permissions(&p, Permissions::from_mode(mode)).unwrap();
    set_mtime(&p, mtime);
}

/// Creates a directory (and parents) with a mode.
pub fn dir(root: &Path, rel: &[u8], mode: u32) {
    let p = at(root, rel);
    fs::create_dir_all(&p).unwrap();
    fs::set_permissions(&p, Permissions::from_mode(mode)).unwrap();
}

/// Creates a symlink.
pub fn link(root: &Path, rel: &[u8], target: &[u8]) {
    let p = at(root, rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(OsStr::from_bytes(target), &p).unwrap();
}

/// Sets a file's or directory's mtime exactly.
pub fn set_mtime(path: &Path, (secs, nanos): (i64, u32)) {
    let t = UNIX_EPOCH + Duration::from_secs(secs as u64) + Duration::from_nanos(u64::from(nanos));
    File::open(path).unwrap().set_times(FileTimes::new().set_modified(t)).unwrap();
}

/// Sets a symlink's own mtime (never its target's).
pub fn set_link_mtime(path: &Path, (secs, nanos): (i64, u32)) {
    let omit = rustix::fs::Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT };
    let mtime = rustix::fs::Timespec { tv_sec: secs, tv_nsec: i64::from(nanos) };
    let times = rustix::fs::Timestamps { last_access: omit, last_modification: mtime };
    rustix::fs::utimensat(rustix::fs::CWD, path, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

/// Gives an entry (a symlink itself, never its target) an owner and group.
pub fn set_owner(path: &Path, uid: u32, gid: u32) {
    let (uid, gid) = (rustix::fs::Uid::from_raw(uid), rustix::fs::Gid::from_raw(gid));
    rustix::fs::chownat(rustix::fs::CWD, path, Some(uid), Some(gid), rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
        .unwrap();
}

/// An entry's (uid, gid) and mtime, not following a symlink.
pub fn owner_and_mtime(path: &Path) -> ((u32, u32), (i64, i64)) {
    let m = fs::symlink_metadata(path).unwrap();
    ((m.uid(), m.gid()), (m.mtime(), m.mtime_nsec()))
}

/// True when the tests run as root (owners can then be given away and must be kept).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// One entry of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File { content: Vec<u8>, mode: u32, mtime: (i64, i64) },
    Dir { mode: u32, mtime: (i64, i64) },
    Link { target: Vec<u8> },
}

/// A tree as raw relative path → node, for whole-tree comparisons.
pub type Snapshot = BTreeMap<Vec<u8>, Node>;

/// Snapshots everything below `root` (not following symlinks), excluding names for which
/// `skip` is true at any depth.
pub fn snapshot(root: &Path) -> Snapshot {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Snapshot) {
    for dent in fs::read_dir(dir).unwrap() {
        let p = dent.unwrap().path();
        let rel = p.strip_prefix(root).unwrap().as_os_str().as_bytes().to_vec();
        let m = fs::symlink_metadata(&p).unwrap();
        let node = if m.file_type().is_symlink() {
            Node::Link { target: fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec() }
        } else if m.is_dir() {
            walk(root, &p, out);
            Node::Dir { mode: m.mode() & 0o7777, mtime: (m.mtime(), m.mtime_nsec()) }
        } else {
            Node::File {
                content: fs::read(&p).unwrap(),
                mode: m.mode() & 0o7777,
                mtime: (m.mtime(), m.mtime_nsec()),
            }
        };
        out.insert(rel, node);
    }
}

/// Asserts two trees are equal in every entry, naming the first differences.
pub fn assert_same_tree(a: &Path, b: &Path) {
    compare(&snapshot(a), &snapshot(b), a, b);
}

/// A snapshot without directory mtimes: what `twoway` keeps equal (directory mtimes move
/// with their contents on each side).
pub fn snapshot_synced(root: &Path) -> Snapshot {
    let mut s = snapshot(root);
    for node in s.values_mut() {
        if let Node::Dir { mtime, .. } = node {
            *mtime = (0, 0);
        }
    }
    s
}

/// Asserts two trees hold the same entries, content, modes and file mtimes.
pub fn assert_same_synced(a: &Path, b: &Path) {
    compare(&snapshot_synced(a), &snapshot_synced(b), a, b);
}

fn compare(sa: &Snapshot, sb: &Snapshot, a: &Path, b: &Path) {
    if sa == sb {
        return;
    }
    let mut diffs = Vec::new();
    for (k, v) in sa {
        match sb.get(k) {
            None => diffs.push(format!("only in {}: {}", a.display(), String::from_utf8_lossy(k))),
            Some(w) if w != v => {
                diffs.push(format!("differs: {} ({})", String::from_utf8_lossy(k), describe(v, w)));
            }
            _ => {}
        }
    }
    for k in sb.keys().filter(|k| !sa.contains_key(*k)) {
        diffs.push(format!("only in {}: {}", b.display(), String::from_utf8_lossy(k)));
    }
    diffs.truncate(20);
    panic!("trees differ:\n{}", diffs.join("\n"));
}

fn describe(a: &Node, b: &Node) -> String {
    match (a, b) {
        (
            Node::File { content: c1, mode: m1, mtime: t1 },
            Node::File { content: c2, mode: m2, mtime: t2 },
        ) => {
            format!("content equal {}, mode {m1:o} vs {m2:o}, mtime {t1:?} vs {t2:?}", c1 == c2)
        }
        _ => format!("{a:?} vs {b:?}").chars().take(200).collect(),
    }
}

/// Inode and ctime of every entry: equal before and after means nothing was written.
pub fn stamps(root: &Path) -> BTreeMap<Vec<u8>, (u64, i64, i64)> {
    let mut out = BTreeMap::new();
    for rel in snapshot(root).keys() {
        let m = fs::symlink_metadata(at(root, rel)).unwrap();
        out.insert(rel.clone(), (m.ino(), m.ctime(), m.ctime_nsec()));
    }
    out
}

/// All names below `root` (at any depth) that look like our temporaries.
pub fn temporaries(root: &Path) -> Vec<Vec<u8>> {
    snapshot(root)
        .into_keys()
        .filter(|k| k.split(|&b| b == b'/').any(|c| c.starts_with(b".synccore-tmp-")))
        .collect()
}

/// A unique-enough pseudo-random generator for test content (xorshift; no dependency).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// Waits until `cond` holds or `timeout` passes; returns whether it held.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Waits up to `secs` for a spawned program to exit by itself and returns its output; kills
/// it and fails the test otherwise (a test never hangs on a program that should have stopped).
pub fn exit_within(mut child: std::process::Child, secs: u64) -> Output {
    let ended = wait_for(Duration::from_secs(secs), || matches!(child.try_wait(), Ok(Some(_))));
    if !ended {
        child.kill().ok();
    }
    let out = child.wait_with_output().unwrap();
    assert!(ended, "still running after {secs} s: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Sends a signal to a process.
pub fn signal(pid: u32, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, sig).unwrap();
}

/// Seconds since the epoch now, for mtimes that are "recent".
pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Pids of the live children of `pid` (from /proc; Linux only).
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for dent in fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = dent.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = fs::read_to_string(dent.path().join("stat")) else { continue };
        // Fields after the command name (which may hold spaces): state, ppid, ...
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        if fields.next().and_then(|p| p.parse::<u32>().ok()) == Some(pid) && state != "Z" {
            out.push(child);
        }
    }
    out
}

/// Waits until the process is stopped (state `T`, e.g. by the `stop:<point>` fault hook of
/// `synccore::fault`); false if it exited or the timeout passed first.
pub fn wait_stopped(pid: u32, timeout: Duration) -> bool {
    wait_for(timeout, || {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.rfind(')').is_some_and(|i| stat[i + 1..].trim_start().starts_with('T')))
    })
}

/// True when the binaries under test are debug builds, which carry the fault-injection points
/// of `synccore::fault` (tests that need them skip, with a printed reason, otherwise).
pub fn has_fault_points() -> bool {
    bin("oneway").parent().and_then(Path::file_name) == Some(OsStr::new("debug"))
}

/// True while a process with this pid exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rfind(')').is_some_and(|i| !stat[i + 1..].trim_start().starts_with('Z')))
}

/// A background child process that is killed (and reaped) when dropped, so that a failing
/// test never leaves a running binary behind.
pub struct Background(pub std::process::Child);

impl Background {
    /// Spawns `c` with stdout and stderr discarded.
    pub fn spawn(mut c: Command) -> Self {
        c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        Background(c.spawn().expect("cannot spawn"))
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }

    pub fn kill(&mut self) -> std::io::Result<()> {
        self.0.kill()
    }

    pub fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.0.wait()
    }

    pub fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        self.0.try_wait()
    }
}

/// `Command::spawn` that returns a [`Background`] (killed on drop, output discarded).
pub trait SpawnGuarded {
    fn spawn_guarded(&mut self) -> Background;
}

impl SpawnGuarded for Command {
    fn spawn_guarded(&mut self) -> Background {
        self.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        Background(self.spawn().expect("cannot spawn"))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}
