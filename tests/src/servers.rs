//! Test servers for the remote stores (issue 18), started and stopped by the tests on
//! 127.0.0.1 only: an S3 emulator ([`Moto`], `moto_server` from `PyPI`'s `moto[server]`) and an
//! OpenSSH server ([`Sshd`], Debian's `openssh-server`) with generated host and user keys, its
//! own configuration and `known_hosts` in a temporary directory. Each listens on a free port
//! and is killed (with what it spawned) when dropped.
//!
//! Like [`crate::strace`], a missing server program skips a test with a printed reason on a
//! developer's machine and fails it under CI (`CI` set), where `.ci/run` installs both.
//!
//! The SFTP client of OpenDAL runs the system `ssh` in multiplexing mode; it takes no
//! configuration file of ours. [`Sshd::client_env`] therefore gives a child process a `PATH`
//! whose first `ssh` is a wrapper adding `-F <our ssh_config>` (our `known_hosts`, our key, no
//! global or user files), so that the tests never read or write `~/.ssh`.

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::wait_for;

/// How long a server may take to accept connections. Generous: moto imports a lot of Python,
/// and the machine may be busy with builds; readiness is polled, never assumed after a sleep.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// True under CI, where a missing tool fails the test instead of skipping it.
fn ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Finds a program: `env` (a variable naming it) first, then each of `names` in `PATH`, then
/// each of `extra` (absolute paths). `None` (the reason printed) when missing outside CI; a
/// failure under CI, because a server test that silently skips proves nothing.
fn find_tool(
    env: Option<&str>,
    names: &[&str],
    extra: &[&str],
    install: &str,
    purpose: &str,
) -> Option<PathBuf> {
    if let Some(p) = env.and_then(std::env::var_os) {
        return Some(PathBuf::from(p));
    }
    let in_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).find_map(|d| names.iter().map(|n| d.join(n)).find(|p| p.is_file()))
    });
    if let Some(p) = in_path.or_else(|| extra.iter().map(PathBuf::from).find(|p| p.is_file())) {
        return Some(p);
    }
    let problem = format!("{} is not installed ({install})", names[0]);
    assert!(!ci(), "{problem}: CI must provide it (.ci/run installs it); {purpose}");
    let _ = writeln!(std::io::stderr(), "skipped: {problem}; {purpose}");
    None
}

/// A port that was free a moment ago. A server may still lose it to another process before it
/// binds; the starters below then try again with another one.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until `port` accepts connections while `child` runs. False when the child exited
/// (the port was taken, or the program failed) or the time ran out.
fn wait_listening(child: &mut Child, port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let end = Instant::now() + START_TIMEOUT;
    while Instant::now() < end {
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Kills a child and reaps it.
fn stop(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// The S3 emulator: `moto_server -H 127.0.0.1 -p PORT`, its log (one line per request) in a
/// temporary directory.
pub struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
    program: PathBuf,
    /// Started checking credentials ([`Moto::start_refusing_credentials`]).
    auth: bool,
    _dir: tempfile::TempDir,
}

/// The access key the tests give the emulator (moto accepts any); never a real secret.
pub const MOTO_KEY_ID: &str = "AKIAE2ETESTKEY";
/// The secret key the tests give the emulator: a recognisable string, so that a test can
/// assert that no message ever prints it.
pub const MOTO_SECRET: &str = "e2e-secret-must-never-be-printed-0123456789";

impl Moto {
    /// Starts the emulator on a free port, or returns `None` (reason printed) when
    /// `moto_server` is missing outside CI. `MOTO_SERVER` may name the program.
    pub fn start() -> Option<Moto> {
        Some(Self::start_with(Self::program()?, None, false))
    }

    /// The emulator's program (`None`, reason printed, when it is missing outside CI).
    fn program() -> Option<PathBuf> {
        find_tool(
            Some("MOTO_SERVER"),
            &["moto_server"],
            &[],
            "pip install 'moto[server]'",
            "the S3 tests run against this emulator",
        )
    }

    /// [`Moto::start`], with moto checking every request's credentials after the first one
    /// (`INITIAL_NO_AUTH_ACTION_COUNT=1`: the bare request of [`Moto::create_bucket`] goes
    /// through, then no key is known to it), to see how a pass meets refused credentials.
    pub fn start_refusing_credentials() -> Option<Moto> {
        Some(Self::start_with(Self::program()?, None, true))
    }

    fn start_with(program: PathBuf, port: Option<u16>, auth: bool) -> Moto {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("moto.log");
        for _attempt in 0..5 {
            let port = port.unwrap_or_else(free_port);
            let out = fs::File::create(&log).unwrap();
            let mut command = Command::new(&program);
            if auth {
                command.env("INITIAL_NO_AUTH_ACTION_COUNT", "1");
            }
            let mut child = command
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .expect("cannot start moto_server");
            if wait_listening(&mut child, port) {
                return Moto { child, port, log, program, auth, _dir: dir };
            }
            stop(&mut child);
        }
        panic!("moto_server did not start: {}", fs::read_to_string(&log).unwrap_or_default());
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment a client of this emulator needs (the standard AWS variables).
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", MOTO_KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", MOTO_SECRET.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
        ]
    }

    /// The same as `key=value` options (for in-process clients: the tests never change
    /// their own environment).
    pub fn options(&self) -> Vec<(String, String)> {
        vec![
            ("access_key_id".into(), MOTO_KEY_ID.into()),
            ("secret_access_key".into(), MOTO_SECRET.into()),
            ("region".into(), "us-east-1".into()),
            ("endpoint".into(), self.endpoint()),
        ]
    }

    /// Creates a bucket (moto checks no signature, so a bare request does).
    pub fn create_bucket(&self, name: &str) {
        let status = self.raw_request("PUT", &format!("/{name}"));
        assert_eq!(status, 200, "cannot create bucket {name}");
    }

    /// Sends one bare HTTP/1.1 request and returns the status code.
    fn raw_request(&self, method: &str, path: &str) -> u16 {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        reply.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
    }

    /// How many HTTP requests the emulator has answered so far (its access log has one line
    /// per request), for request counts per operation.
    pub fn requests(&self) -> usize {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        log.lines().filter(|l| l.contains(" HTTP/1.1\" ")).count()
    }

    /// The access log's request lines (`"METHOD /path HTTP/1.1" status`), for assertions.
    pub fn request_lines(&self) -> Vec<String> {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains(" HTTP/1.1\" "))
            .filter_map(|l| l.split_once('"').map(|(_, r)| r.to_owned()))
            .collect()
    }

    /// Kills the emulator (what a crashed or unreachable store looks like to a client).
    pub fn kill(&mut self) {
        stop(&mut self.child);
    }

    /// Starts the emulator again on the same port, empty (moto keeps nothing on disk).
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port;
        let next = Self::start_with(self.program.clone(), Some(port), self.auth);
        *self = next;
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// An OpenSSH server on 127.0.0.1 that lets the current user in with a key generated for the
/// test, serving SFTP (`internal-sftp`).
pub struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    user: String,
}

impl Sshd {
    /// Starts `sshd` on a free port, or returns `None` (reason printed) when OpenSSH's server
    /// is missing outside CI.
    pub fn start() -> Option<Sshd> {
        let purpose = "the SFTP tests run against this server";
        let install = "apt-get install openssh-server";
        let sshd = find_tool(Some("SSHD"), &["sshd"], &["/usr/sbin/sshd"], install, purpose)?;
        let keygen = find_tool(None, &["ssh-keygen"], &[], "apt-get install openssh-client", purpose)?;
        let ssh = find_tool(None, &["ssh"], &[], "apt-get install openssh-client", purpose)?;
        let dir = tempfile::Builder::new().prefix("e2e-sshd-").tempdir().unwrap();
        let d = dir.path();
        for key in ["host_key", "user_key"] {
            let out = Command::new(&keygen)
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "e2e", "-f"])
                .arg(d.join(key))
                .output()
                .unwrap();
            assert!(out.status.success(), "ssh-keygen failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        fs::copy(d.join("user_key.pub"), d.join("authorized_keys")).unwrap();
        let user = current_user();
        // Run as root, sshd needs its privilege separation directory (the package's service
        // would create it).
        if crate::is_root() {
            fs::create_dir_all("/run/sshd").unwrap();
        }
        let client_config = format!(
            "Host *\n  UserKnownHostsFile {d}/known_hosts\n  GlobalKnownHostsFile /dev/null\n  \
             IdentityFile {d}/user_key\n  IdentitiesOnly yes\n  StrictHostKeyChecking yes\n  \
             BatchMode yes\n  LogLevel ERROR\n",
            d = d.display()
        );
        fs::write(d.join("ssh_config"), client_config).unwrap();
        let bin = d.join("bin");
        fs::create_dir(&bin).unwrap();
        let wrapper = format!("#!/bin/sh\nexec '{}' -F '{}/ssh_config' \"$@\"\n", ssh.display(), d.display());
        fs::write(bin.join("ssh"), wrapper).unwrap();
        fs::set_permissions(bin.join("ssh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(d.join("state")).unwrap();
        fs::create_dir(d.join("home")).unwrap();
        let host_pub = fs::read_to_string(d.join("host_key.pub")).unwrap();
        let log = d.join("sshd.log");
        for _attempt in 0..5 {
            let port = free_port();
            let config = format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPubkeyAuthentication yes\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 PermitRootLogin prohibit-password\nStrictModes no\nSubsystem sftp internal-sftp\n\
                 MaxSessions 100\nMaxStartups 100\nLogLevel INFO\n",
                d = d.display()
            );
            fs::write(d.join("sshd_config"), config).unwrap();
            fs::write(d.join("known_hosts"), format!("[127.0.0.1]:{port} {host_pub}")).unwrap();
            let out = fs::File::create(&log).unwrap();
            let mut child = Command::new(&sshd)
                .args(["-D", "-e", "-f"])
                .arg(d.join("sshd_config"))
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .expect("cannot start sshd");
            if wait_listening(&mut child, port) {
                return Some(Sshd { child, port, dir, user });
            }
            stop(&mut child);
        }
        panic!("sshd did not start: {}", fs::read_to_string(&log).unwrap_or_default());
    }

    /// `sftp://USER@127.0.0.1:PORT/<root>/<path>`: `path` below a directory of this server's
    /// own temporary directory (absolute on the server, which is this machine).
    pub fn url(&self, path: &str) -> String {
        format!("sftp://{}@127.0.0.1:{}{}/home/{path}", self.user, self.port, self.dir.path().display())
    }

    /// Where `url(path)` lies on this machine.
    pub fn local_path(&self, path: &str) -> PathBuf {
        self.dir.path().join("home").join(path)
    }

    /// The environment a client process needs: `PATH` with the `ssh` wrapper first (our
    /// `known_hosts` and key, never `~/.ssh`), and `XDG_STATE_HOME` for the control sockets of
    /// the multiplexed connections.
    pub fn client_env(&self) -> Vec<(&'static str, OsString)> {
        let mut path = OsString::from(self.dir.path().join("bin"));
        if let Some(rest) = std::env::var_os("PATH") {
            path.push(":");
            path.push(rest);
        }
        vec![("PATH", path), ("XDG_STATE_HOME", self.dir.path().join("state").into())]
    }

    /// Kills every ssh client process of this server's clients (they run our wrapper's
    /// `-F <dir>/ssh_config`): a dropped connection, as a client sees it.
    pub fn drop_client_connections(&self) -> usize {
        let needle = self.dir.path().join("ssh_config");
        let needle = needle.as_os_str().as_encoded_bytes();
        let mut killed = 0;
        for dent in fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = dent.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(cmdline) = fs::read(dent.path().join("cmdline")) else { continue };
            if cmdline.windows(needle.len()).any(|w| w == needle)
                && let Some(pid) = rustix::process::Pid::from_raw(pid as i32)
                && rustix::process::kill_process(pid, rustix::process::Signal::KILL).is_ok()
            {
                killed += 1;
            }
        }
        killed
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// The server's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // The clients' multiplexing masters outlive the processes that started them (OpenSSH's
        // ControlPersist); end them first, then the server.
        self.drop_client_connections();
        stop(&mut self.child);
    }
}

/// The current user's login name (`USER`, else `id -un`).
fn current_user() -> String {
    if let Some(u) = std::env::var_os("USER").and_then(|u| u.into_string().ok()).filter(|u| !u.is_empty()) {
        return u;
    }
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Waits until `cond` holds, for at most a minute (a bound, never a guess at speed).
pub fn eventually(what: &str, cond: impl FnMut() -> bool) {
    assert!(wait_for(Duration::from_secs(60), cond), "timed out waiting for {what}");
}
