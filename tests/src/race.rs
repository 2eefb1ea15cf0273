//! The attacker of the security tests (SPEC section 5, "No operation leaves its root"; the
//! security issue): a directory inside a tree is swapped for a symlink to a canary directory
//! that lies outside every root, while a pass runs. The canary proves that nothing was
//! written, renamed, deleted or re-moded through the symlink (and, being a lookalike of the
//! victim, that nothing was read through it into a tree).
//!
//! Three ways to land the swap: a [`Swapper`] thread that exchanges the two in a tight loop
//! (races, repeated over many trials); one [`Swapped`] exchange while the pass is stopped at a
//! fault point of the debug builds; and [`with_delayed_call`], which runs the pass under
//! `strace` with one system call delayed and swaps while that call waits, before the kernel
//! resolves its path.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};

use crate::{Node, Rng, Snapshot, at, set_mtime, snapshot, stamps};

/// The name, in the aside directory, of the entry exchanged with the victim: the symlink to
/// the canary while the victim holds its real directory, and the real directory meanwhile.
const PARTNER: &str = "swap";

/// Names a canary holds besides its lookalikes: one that no tree has (found in a tree, it was
/// read through the symlink; the canary's own tag is appended), and one shaped like our
/// temporaries (a pass that lists the canary through the symlink would remove it as a
/// leftover).
const CANARY_ONLY: &str = "canary-only-";
const BAIT_TEMP: &str = ".synccore-tmp-bait";

/// Inode and ctime of every entry (see [`crate::stamps`]).
type Stamps = std::collections::BTreeMap<Vec<u8>, (u64, i64, i64)>;

/// A directory outside every root, built as a lookalike of a victim directory: the same names,
/// sizes, modes and mtimes, different bytes. Through a symlink it looks to a pass like the
/// directory it replaced, so that neither a size nor an mtime check stops a read or a write
/// that goes through it.
pub struct Canary {
    /// `<home>/canary`: what the symlink points to.
    dir: PathBuf,
    home: PathBuf,
    /// Everything below `home` (the canary directory itself included) and every entry's inode
    /// and ctime: equal afterwards means nothing wrote, renamed, linked, re-moded or touched
    /// anything of it, not even a temporary created and removed again.
    before: (Snapshot, Stamps),
    /// Each canary file's bytes, to the path it has in the canary.
    contents: HashMap<Vec<u8>, Vec<u8>>,
    /// The name only this canary has.
    only: Vec<u8>,
}

impl Canary {
    /// Builds `<home>/canary` as a lookalike of `model` restricted to the relative paths for
    /// which `keep` holds (a kept file's directories must be kept too), plus its own names.
    /// With `owner`, everything is given that (uid, gid) before the fingerprint is taken.
    pub fn lookalike(
        home: &Path,
        model: &Path,
        keep: impl Fn(&[u8]) -> bool,
        owner: Option<(u32, u32)>,
    ) -> Canary {
        let dir = home.join("canary");
        fs::create_dir_all(&dir).unwrap();
        // The bytes and the canary-only name carry the canary's own tag, so that what one trial
        // let through is not counted again against the next trial's canary.
        let tag = home.file_name().unwrap().as_encoded_bytes().to_vec();
        let only = format!("{CANARY_ONLY}{}", String::from_utf8_lossy(&tag));
        let mut contents = HashMap::new();
        let mut dirs = vec![(Vec::new(), 0o755, (1_600_000_000, 0))];
        for (rel, node) in snapshot(model) {
            if !keep(&rel) {
                continue;
            }
            match node {
                Node::Dir { mode, mtime } => {
                    fs::create_dir_all(at(&dir, &rel)).unwrap();
                    dirs.push((rel, mode, (mtime.0, mtime.1 as u32)));
                }
                Node::File { content, mode, mtime } => {
                    let bytes = lookalike_bytes(&rel, &tag, content.len());
                    let path = at(&dir, &rel);
                    fs::write(&path, &bytes).unwrap();
                    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
                    set_mtime(&path, (mtime.0, mtime.1 as u32));
                    if !bytes.is_empty() {
                        contents.insert(bytes, rel);
                    }
                }
                Node::Link { .. } => {}
            }
        }
        for name in [only.as_str(), BAIT_TEMP] {
            let bytes =
                format!("{name}: {}, never part of any tree", String::from_utf8_lossy(&tag)).into_bytes();
            fs::write(dir.join(name), &bytes).unwrap();
            set_mtime(&dir.join(name), (1_600_000_000, 0));
            contents.insert(bytes, name.as_bytes().to_vec());
        }
        if let Some((uid, gid)) = owner {
            for rel in std::iter::once(Vec::new()).chain(snapshot(&dir).into_keys()) {
                crate::set_owner(&at(&dir, &rel), uid, gid);
            }
        }
        // Directories last and deepest first: creating their entries moved their mtimes.
        for (rel, mode, mtime) in dirs.into_iter().rev() {
            let path = at(&dir, &rel);
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            set_mtime(&path, mtime);
        }
        let before = (snapshot(home), stamps(home));
        Canary { dir, home: home.to_path_buf(), before, contents, only: only.into_bytes() }
    }

    /// The directory the symlink points to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What changed in the canary since it was built (empty when nothing did): removed
    /// entries first, then new ones, then changed ones, then ones only written to.
    pub fn changes(&self) -> Vec<String> {
        let (now, now_stamps) = (snapshot(&self.home), stamps(&self.home));
        let (old, old_stamps) = &self.before;
        let name = |k: &[u8]| String::from_utf8_lossy(k).into_owned();
        let mut out: Vec<String> = old
            .keys()
            .filter(|k| !now.contains_key(*k))
            .map(|k| format!("canary: {} was removed", name(k)))
            .collect();
        let (mut new, mut changed, mut written) = (Vec::new(), Vec::new(), Vec::new());
        for (k, v) in &now {
            match old.get(k) {
                None => new.push(format!("canary: new entry {}", name(k))),
                Some(w) if w != v => changed.push(format!("canary: {} changed ({})", name(k), change(w, v))),
                Some(_) if old_stamps.get(k) != now_stamps.get(k) => {
                    written.push(format!("canary: {} was written to (ctime or inode moved)", name(k)));
                }
                Some(_) => {}
            }
        }
        out.extend(new.into_iter().chain(changed).chain(written));
        for line in &mut out {
            line.truncate(300);
        }
        out
    }

    /// Files below `tree` that hold a canary file's bytes or the canary's own name: what a
    /// pass read through the symlink and wrote into a tree.
    pub fn leaks(&self, tree: &Path) -> Vec<String> {
        let mut out = Vec::new();
        if !tree.exists() {
            return out;
        }
        for (rel, node) in snapshot(tree) {
            let shown = || format!("{}/{}", tree.display(), String::from_utf8_lossy(&rel));
            if let Node::File { content, .. } = &node
                && let Some(from) = self.contents.get(content)
            {
                out.push(format!("{} holds the bytes of canary/{}", shown(), String::from_utf8_lossy(from)));
            } else if rel.ends_with(&self.only) {
                out.push(format!("{} is a name only the canary has", shown()));
            }
        }
        out
    }

    /// [`Canary::changes`] and [`Canary::leaks`] into each of `trees`.
    pub fn problems(&self, trees: &[&Path]) -> Vec<String> {
        let mut out = self.changes();
        for tree in trees {
            out.extend(self.leaks(tree));
        }
        out
    }
}

/// How an entry changed, briefly.
fn change(old: &Node, new: &Node) -> String {
    let mut parts = Vec::new();
    let mut meta = |(m1, t1): (u32, (i64, i64)), (m2, t2): (u32, (i64, i64))| {
        if m1 != m2 {
            parts.push(format!("mode {m1:o} -> {m2:o}"));
        }
        if t1 != t2 {
            parts.push(format!("mtime {}.{:09} -> {}.{:09}", t1.0, t1.1, t2.0, t2.1));
        }
    };
    match (old, new) {
        (
            Node::File { content: c1, mode: m1, mtime: t1 },
            Node::File { content: c2, mode: m2, mtime: t2 },
        ) => {
            meta((*m1, *t1), (*m2, *t2));
            if c1 != c2 {
                parts.push(format!("bytes changed ({} -> {} bytes)", c1.len(), c2.len()));
            }
        }
        (Node::Dir { mode: m1, mtime: t1 }, Node::Dir { mode: m2, mtime: t2 }) => {
            meta((*m1, *t1), (*m2, *t2));
        }
        _ => parts.push("replaced by another kind of entry".into()),
    }
    parts.join(", ")
}

/// Bytes as long as the model file's, distinct per path and per canary even when short (a
/// hash of both comes first), and recognisably a canary's.
fn lookalike_bytes(rel: &[u8], tag: &[u8], len: usize) -> Vec<u8> {
    // FNV-1a: small, and enough to tell a few thousand paths apart.
    let hash = tag
        .iter()
        .chain(b"/")
        .chain(rel)
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let pattern =
        format!("{hash:016x};{};{};CANARY;", String::from_utf8_lossy(tag), String::from_utf8_lossy(rel));
    pattern.bytes().cycle().take(len).collect()
}

/// A victim directory and the symlink it is exchanged with. Both are held by directory file
/// descriptors, so the attack follows the victim's parent wherever a pass moves it (a slot
/// rotated from `_1` to `_0`, a directory a restore swaps away).
struct Victim {
    parent: OwnedFd,
    name: OsString,
    aside: OwnedFd,
    /// The inode of the real directory, to put it back wherever the exchanges left it.
    real: u64,
}

impl Victim {
    /// Creates `aside` (a directory outside every root, on the victim's file system) holding
    /// the symlink to `canary`.
    fn new(victim: &Path, canary: &Path, aside: &Path) -> Victim {
        fs::create_dir_all(aside).unwrap();
        std::os::unix::fs::symlink(canary, aside.join(PARTNER)).unwrap();
        let open = |p: &Path| {
            rustix::fs::open(p, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .unwrap_or_else(|e| panic!("cannot open {}: {e}", p.display()))
        };
        let parent = open(victim.parent().unwrap());
        let name = victim.file_name().unwrap().to_os_string();
        let real = rustix::fs::statat(&parent, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
            .unwrap_or_else(|e| panic!("no victim directory {}: {e}", victim.display()))
            .st_ino;
        Victim { parent, name, aside: open(aside), real }
    }

    /// Exchanges the victim and its partner atomically: neither name is ever missing.
    fn exchange(&self) -> rustix::io::Result<()> {
        rustix::fs::renameat_with(
            &self.parent,
            self.name.as_os_str(),
            &self.aside,
            PARTNER,
            RenameFlags::EXCHANGE,
        )
    }

    fn inode_at(dir: &OwnedFd, name: &std::ffi::OsStr) -> Option<u64> {
        rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok().map(|s| s.st_ino)
    }

    /// Puts the real directory back at the victim's name; false when that is not possible (a
    /// pass removed the victim's parent, or moved the real directory elsewhere).
    fn put_back(&self) -> bool {
        let here = Self::inode_at(&self.parent, &self.name);
        if here == Some(self.real) {
            return true;
        }
        if Self::inode_at(&self.aside, PARTNER.as_ref()) != Some(self.real) {
            return false;
        }
        if here.is_none() {
            rustix::fs::renameat_with(
                &self.aside,
                PARTNER,
                &self.parent,
                self.name.as_os_str(),
                RenameFlags::NOREPLACE,
            )
            .is_ok()
        } else {
            self.exchange().is_ok()
        }
    }
}

/// One exchange of a victim directory with a symlink to the canary, for a pass that is stopped
/// (at a fault point, or in a delayed system call); [`Swapped::put_back`] undoes it.
pub struct Swapped(Victim);

impl Swapped {
    /// Puts a symlink to `canary` in the place of the directory `victim` (its real directory
    /// moves into `aside`).
    pub fn swap(victim: &Path, canary: &Path, aside: &Path) -> Swapped {
        let v = Victim::new(victim, canary, aside);
        v.exchange().unwrap_or_else(|e| panic!("cannot exchange {}: {e}", victim.display()));
        Swapped(v)
    }

    /// Puts the real directory back; false when the pass removed or moved it meanwhile.
    pub fn put_back(self) -> bool {
        self.0.put_back()
    }
}

/// When a [`Swapper`] starts exchanging.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// At once: the attack covers the scans too.
    Now,
    /// At the first change (mtime or ctime) of this directory, typically the first write of
    /// the pass into the victim: the scans are over, and the attack lands on the writers.
    FirstChangeIn(PathBuf),
}

/// What a [`Swapper`] did.
#[derive(Debug, Default, Clone)]
pub struct SwapReport {
    /// Exchanges made (two per round: symlink in, real directory back).
    pub exchanges: u64,
    /// Why the loop stopped before it was told to (the victim vanished, say).
    pub ended_by: Option<String>,
    /// True when the real directory is back at the victim's name.
    pub put_back: bool,
}

/// A thread that, until stopped, keeps exchanging a victim directory with a symlink to a
/// canary (`renameat2(RENAME_EXCHANGE)`, the tightest and atomic way), holding each state for
/// a varying time so that the swap lands at different moments of a pass from trial to trial.
/// Stopped (or dropped), it puts the real directory back.
pub struct Swapper {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<SwapReport>>,
}

impl Swapper {
    /// Starts attacking `victim`. `aside` is a fresh directory outside every root on the same
    /// file system; `seed` varies the timing.
    pub fn start(victim: &Path, canary: &Path, aside: &Path, trigger: Trigger, seed: u64) -> Swapper {
        let v = Victim::new(victim, canary, aside);
        // The trigger's baseline is taken now, before the pass starts.
        let watch = match trigger {
            Trigger::Now => None,
            Trigger::FirstChangeIn(dir) => {
                let watched = fs::File::open(&dir).unwrap();
                let base = change_stamp(&watched);
                Some((watched, base))
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || attack(&v, watch.as_ref(), &stopping, seed));
        Swapper { stop, thread: Some(thread) }
    }

    /// Stops the attack and puts the real directory back.
    pub fn stop(mut self) -> SwapReport {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A directory's mtime and ctime: either moves when an entry is created, removed or renamed
/// in it, or its metadata changes.
fn change_stamp(dir: &fs::File) -> [i64; 4] {
    let m = dir.metadata().unwrap();
    [m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()]
}

fn spin(n: u64) {
    for _ in 0..n {
        std::hint::spin_loop();
    }
}

/// The swapper's loop.
fn attack(v: &Victim, watch: Option<&(fs::File, [i64; 4])>, stop: &AtomicBool, seed: u64) -> SwapReport {
    let mut report = SwapReport::default();
    let mut rng = Rng::new(seed);
    // How long each state is held, in spins: from back-to-back exchanges to tens of
    // microseconds, with the symlink or the real directory held longer.
    let (link_max, real_max) = [(0, 0), (2_000, 200), (200, 2_000), (20_000, 20_000)][(seed % 4) as usize];
    if let Some((dir, base)) = watch {
        while !stop.load(Ordering::Relaxed) && change_stamp(dir) == *base {
            std::hint::spin_loop();
        }
    }
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = v.exchange() {
            report.ended_by = Some(format!("exchange failed: {e}"));
            break;
        }
        report.exchanges += 1;
        spin(rng.below(link_max + 1));
        if let Err(e) = v.exchange() {
            report.ended_by = Some(format!("exchange back failed: {e}"));
            break;
        }
        report.exchanges += 1;
        spin(rng.below(real_max + 1));
    }
    report.put_back = v.put_back();
    report
}

/// The numbers of the system calls that [`with_delayed_call`] can wait for, on this
/// architecture (`/proc/<tid>/syscall` shows numbers, not names).
fn syscall_number(name: &str) -> Option<i64> {
    let table: &[(&str, i64)] = match std::env::consts::ARCH {
        "x86_64" => &[
            ("rename", 82),
            ("renameat", 264),
            ("renameat2", 316),
            ("unlink", 87),
            ("unlinkat", 263),
            ("utimensat", 280),
            ("mkdir", 83),
            ("mkdirat", 258),
            ("link", 86),
            ("linkat", 265),
        ],
        "aarch64" => &[
            ("renameat", 38),
            ("renameat2", 276),
            ("unlinkat", 35),
            ("utimensat", 88),
            ("mkdirat", 34),
            ("linkat", 37),
        ],
        _ => &[],
    };
    table.iter().find(|(n, _)| *n == name).map(|(_, nr)| *nr)
}

/// A thread of `pid` stopped (by strace, state `t`) at the entry of one of `numbers`: its
/// task id and its `/proc/<tid>/syscall` line (number and arguments).
fn waiting_in(pid: u32, numbers: &[i64]) -> Option<(String, String)> {
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let Ok(stat) = fs::read_to_string(task.path().join("stat")) else { continue };
        let traced = stat.rfind(')').is_some_and(|i| stat[i + 1..].trim_start().starts_with('t'));
        let Ok(line) = fs::read_to_string(task.path().join("syscall")) else { continue };
        let number = line.split_whitespace().next().and_then(|n| n.parse::<i64>().ok());
        if traced && number.is_some_and(|n| numbers.contains(&n)) {
            return Some((task.file_name().to_string_lossy().into_owned(), line));
        }
    }
    None
}

/// How long strace holds the delayed call: far longer than it takes to see it and swap.
const DELAY: Duration = Duration::from_millis(600);

/// Runs `command` under `strace`, delaying each thread's first call of each of `calls` by
/// [`DELAY`] before the kernel runs it (`inject=...:delay_enter=...:when=1`). When a thread is
/// seen waiting in one of them, `during` runs, and the call then goes on and resolves its
/// paths in the world `during` made. Returns the program's output (its exit status is
/// strace's) and whether `during` ran while the call was still waiting.
pub fn with_delayed_call(
    strace: &Path,
    command: &Command,
    calls: &[&str],
    during: impl FnOnce(),
) -> (Output, bool) {
    let numbers: Vec<i64> = calls.iter().filter_map(|c| syscall_number(c)).collect();
    assert!(!numbers.is_empty(), "no syscall numbers for {calls:?} on {}", std::env::consts::ARCH);
    // `?` lets strace ignore a name this architecture lacks (aarch64 has no `unlink`).
    let set: Vec<String> = calls.iter().map(|c| format!("?{c}")).collect();
    let set = set.join(",");
    let mut c = Command::new(strace);
    c.args(["-f", "-qq", "-o", "/dev/null", "-e", &format!("trace={set}")])
        .args(["-e", &format!("inject={set}:delay_enter={}:when=1", DELAY.as_micros()), "--"])
        .arg(command.get_program())
        .args(command.get_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = command.get_current_dir() {
        c.current_dir(dir);
    }
    for (k, v) in command.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let mut child = c.spawn().expect("cannot run strace");
    let mut during = Some(during);
    let mut landed = false;
    let end = Instant::now() + Duration::from_secs(120);
    let mut seen: Option<((String, String), u32)> = None;
    while Instant::now() < end && matches!(child.try_wait(), Ok(None)) {
        let traced = crate::children_of(child.id()).first().copied();
        match traced.and_then(|pid| waiting_in(pid, &numbers).map(|w| (pid, w))) {
            // Seen in the same call three times, 10 ms apart: this is the delayed one, not a
            // call caught at its ordinary syscall stop.
            Some((pid, w)) => {
                let times = match &seen {
                    Some((prev, n)) if *prev == w => n + 1,
                    _ => 1,
                };
                seen = Some((w.clone(), times));
                if times >= 3 {
                    (during.take().unwrap())();
                    landed = waiting_in(pid, &numbers).as_ref() == Some(&w);
                    break;
                }
            }
            None => seen = None,
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("cannot wait for strace");
    if let Some(during) = during {
        // The program never waited in a delayed call: the world still changes (the caller's
        // assertions hold either way), but `landed` says the window was missed.
        during();
    }
    (out, landed)
}

/// A command for a workspace binary run as the unprivileged user 65534 (with `setpriv` when
/// the tests run as root; directly when they already run unprivileged), or `None` with the
/// reason printed.
pub fn unprivileged(name: &str, cwd: &Path) -> Option<Command> {
    if !crate::is_root() {
        return Some(crate::cmd(name, cwd));
    }
    let setpriv = Path::new("/usr/bin/setpriv");
    if !setpriv.exists() {
        // As `crate::strace`: in CI a missing tool fails the test instead of skipping it.
        assert!(
            std::env::var_os("CI").is_none_or(|v| v.is_empty()),
            "setpriv is missing: CI must provide it (util-linux); the unprivileged tests need it"
        );
        // Straight to the file descriptor: the harness captures `eprintln!` of passing tests.
        let _ = writeln!(std::io::stderr(), "skipped: running as root and setpriv is missing");
        return None;
    }
    let mut c = Command::new(setpriv);
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(crate::bin(name)).current_dir(cwd);
    Some(c)
}

/// Gives `path` and everything below it to `(uid, gid)` (symlinks themselves, never their
/// targets).
pub fn chown_tree(path: &Path, uid: u32, gid: u32) {
    crate::set_owner(path, uid, gid);
    for rel in snapshot(path).keys() {
        crate::set_owner(&at(path, rel), uid, gid);
    }
}

/// The first differences between two snapshots, described (empty when they are equal).
pub fn differences(a: &Snapshot, b: &Snapshot, a_name: &str, b_name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => out.push(format!("only in {a_name}: {}", String::from_utf8_lossy(k))),
            Some(w) if w != v => {
                out.push(format!("{} differs between {a_name} and {b_name}", String::from_utf8_lossy(k)));
            }
            Some(_) => {}
        }
    }
    for k in b.keys().filter(|k| !a.contains_key(*k)) {
        out.push(format!("only in {b_name}: {}", String::from_utf8_lossy(k)));
    }
    out.truncate(8);
    out
}
