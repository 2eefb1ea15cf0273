//! Starting the recovery system (SPEC section 4 "Recovery"): read or create `config.json`,
//! record both directories in `.info.json`, and start one `oneway --versioned` child per
//! directory, so that each keeps its `_1`/`_0` versions under `<home>/__versions__/`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use synccore::error::{Error, Op};
use synccore::restore::Version;
use synccore::versions::{Layout, version_name};

use crate::cli::{Args, VersionArg};
use crate::supervise::{self, ChildSpec, Children};

/// The restore version named on the command line.
pub fn version_of(v: VersionArg) -> Version {
    match v {
        VersionArg::Latest => Version::Latest,
        VersionArg::Previous => Version::Previous,
        VersionArg::Undo => Version::Undo,
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
        .map(|(dir, partner)| {
            (dir.clone(), version_name(dir), Layout::new(home, dir).dir().to_path_buf(), partner.clone())
        })
        .collect();
    synccore::recovery::record(&synccore::restore::info_path(home), &dirs)?;
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
