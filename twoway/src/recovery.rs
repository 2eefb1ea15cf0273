//! Starting the recovery system (SPEC section 4 "Recovery"): read or create `config.json`,
//! record both directories in `.info.json`, and start one `oneway --versioned` child per
//! directory, so that each keeps its `_1`/`_0` versions under `<home>/__versions__/`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use synccore::error::{Error, Op, Quoted};
use synccore::restore::{Kept, Restored, Source, Version};
use synccore::versions::{Layout, Slot, version_name};

use crate::cli::{Args, VersionArg};
use crate::supervise::{self, ChildSpec, Children};

/// The restore version named on the command line (`latest` when none is).
pub fn version_of(v: Option<VersionArg>) -> Version {
    match v {
        None | Some(VersionArg::Latest) => Version::Latest,
        Some(VersionArg::Previous) => Version::Previous,
        Some(VersionArg::Undo) => Version::Undo(None),
        Some(VersionArg::UndoAt(stamp)) => Version::Undo(Some(stamp)),
    }
}

/// Logs what a restore did (hardening issue point 1: the output names the generation it
/// created and the one it restored from).
pub fn log_restored(done: &Restored) {
    let dir = Quoted(&done.dir);
    for m in &done.migrated {
        log::info!("migrated the old undo slot {} to the undo generation {}", Quoted(&m.from), Quoted(&m.to));
    }
    if done.repair.did_something() {
        log::info!(
            "repaired the versions of {dir}, which an interrupted versioning pass had left unfinished"
        );
    }
    if done.removed_leftovers > 0 {
        log::info!("removed {} temporaries left by an interrupted restore", done.removed_leftovers);
    }
    for path in &done.special {
        log::warn!("{dir}: special file \"{path}\" (fifo, socket or device) is not kept");
    }
    log_kept(&done.dir, &done.kept);
    if let Some(late) = &done.kept_late {
        log::warn!("{dir} changed while it was being swapped; what it held then is kept too");
        log_kept(&done.dir, late);
    }
    let source = match done.source {
        Source::Slot(Slot::Latest) => "the latest version".to_string(),
        Source::Slot(Slot::Previous) => "the previous version".to_string(),
        Source::Generation(stamp) => format!("undo generation {stamp}"),
    };
    log::info!(
        "restored {dir} from {source} {} ({} entries, {} bytes)",
        Quoted(&done.from),
        done.stats.operations(),
        done.stats.copied_bytes
    );
    if !matches!(done.kept, Kept::Nothing) {
        log::info!("`--version undo` brings back what it held before");
    }
}

fn log_kept(dir: &Path, kept: &Kept) {
    let dir = Quoted(dir);
    match kept {
        Kept::Nothing => log::info!("{dir} was empty or missing: nothing to keep"),
        Kept::SameAsNewest { stamp, path } => log::info!(
            "what {dir} held is identical to the undo generation {stamp} ({}); not kept twice",
            Quoted(path)
        ),
        Kept::Generation { stamp, path, linked_files, copied_bytes } => log::info!(
            "kept what {dir} held as the undo generation {stamp} ({}; {linked_files} files shared \
             with the versions, {copied_bytes} bytes copied)",
            Quoted(path)
        ),
    }
}

/// Loads the config, registers the pair and starts the children. Any problem with the
/// config is an input error (exit 2) and nothing is started.
pub fn start(
    args: &Args,
    home: &Path,
    roots: &[PathBuf; 2],
    once: bool,
    shutdown: Arc<AtomicBool>,
) -> Result<Children, Error> {
    let config_path = match &args.config {
        Some(path) => synccore::roots::absolute(path)?,
        None => home.join("config.json"),
    };
    let exe =
        std::env::current_exe().map_err(|e| Error::Io { op: Op::Stat, path: "twoway".into(), source: e })?;
    let config = synccore::recovery::load_config(&config_path, &exe.with_file_name("oneway"))?;
    for key in &config.unknown_keys {
        log::warn!("{}: unknown key \"{key}\" ignored", synccore::error::Quoted(&config_path));
    }
    let [a, b] = roots;
    let dirs: Vec<(PathBuf, OsString, PathBuf, PathBuf)> = [(a, b), (b, a)]
        .into_iter()
        .map(|(dir, partner)| (dir.clone(), version_name(dir), Layout::new(home, dir).dir(), partner.clone()))
        .collect();
    synccore::recovery::record(&synccore::recovery::info_path(home), &dirs)?;
    let logs = home.join("logs");
    synccore::fsio::create_dirs(&logs)?;
    let specs = dirs
        .iter()
        .map(|(dir, name, _, _)| {
            let mut log = OsString::from("oneway-");
            log.push(name);
            log.push(".log");
            let mut args: Vec<OsString> = vec![dir.into(), home.into(), "--versioned".into()];
            args.extend(config.interval.iter().map(OsString::from));
            args.extend(["--log".into(), logs.join(log).into(), "--quiet".into()]);
            if once {
                args.push("--once".into());
            }
            ChildSpec { dir: dir.clone(), program: config.script.clone(), args }
        })
        .collect();
    supervise::start(specs, shutdown, once).map_err(|e| Error::Io {
        op: Op::Create,
        path: config.script.clone(),
        source: e,
    })
}
