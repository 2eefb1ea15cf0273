//! The recovery system (SPEC section 4 "Recovery"): `config.json` ([`config`]), the register
//! of protected directories `.info.json` ([`info`]), and one supervised `oneway --versioned`
//! child per directory ([`children`]), so that each keeps its `_1`/`_0` versions under
//! `<home>/__versions__/`.

pub mod children;
pub mod config;
pub mod info;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use synccore::error::{Error, Op, Quoted};
use synccore::shutdown::Shutdown;
use synccore::versions::{Layout, version_name};

use self::children::{ChildSpec, Children};
use self::info::NewProtected;
use crate::cli::Args;

/// Loads the config, registers the pair and starts the children. Any problem with the
/// config is an input error (exit 2) and nothing is started.
pub fn start(
    args: &Args,
    home: &Path,
    roots: &[PathBuf; 2],
    excludes: &synccore::ignore::Excludes,
    once: bool,
    shutdown: &Shutdown,
) -> Result<Children, Error> {
    let config_path = match &args.config {
        Some(path) => synccore::roots::absolute(path)?,
        None => home.join("config.json"),
    };
    let exe = std::env::current_exe().map_err(|e| Error::Setup {
        what: "the recovery system",
        reason: format!("cannot find twoway's own path: {e}"),
    })?;
    let config = config::load_config(&config_path, &config::find_oneway(&exe))?;
    for key in &config.unknown_keys {
        log::warn!("{}: unknown key \"{key}\" ignored", Quoted(&config_path));
    }
    if let Some(old) = &config.replaced_script {
        log::warn!(
            "{}: the default script {} no longer exists; using {}",
            Quoted(&config_path),
            Quoted(old),
            Quoted(&config.script)
        );
    }
    // The children's period: the config's when the user wrote one, else twoway's own
    // (issue 16, point 7).
    let interval: Vec<OsString> = match &config.interval {
        Some(words) => words.iter().map(OsString::from).collect(),
        None => vec!["--interval".into(), args.common.interval.to_string().into()],
    };
    let [a, b] = roots;
    let dirs: Vec<NewProtected> = [(a, b), (b, a)]
        .into_iter()
        .map(|(dir, partner)| NewProtected {
            dir: dir.clone(),
            name: version_name(dir),
            versions: Layout::new(home, dir).dir(),
            partner: partner.clone(),
        })
        .collect();
    info::record(&info::info_path(home), &dirs)?;
    // The children's logs: a directory of the home, made and checked beneath it (a symlink
    // there is refused, never followed; the security issue).
    let logs = home.join("logs");
    let home_root = synccore::fsio::Root::open(home)?;
    home_root.create_dirs(Path::new("logs"))?;
    home_root.dir(Path::new("logs")).map_err(|e| Error::Io {
        op: Op::CreateDir,
        path: logs.clone(),
        source: e,
    })?;
    let specs = dirs
        .iter()
        .map(|NewProtected { dir, name, .. }| {
            let mut log = OsString::from("oneway-");
            log.push(name);
            log.push(".log");
            let mut args: Vec<OsString> = vec![dir.into(), home.into(), "--versioned".into()];
            args.extend(interval.iter().cloned());
            args.extend(["--log".into(), logs.join(log).into(), "--quiet".into()]);
            // The same excludes as the pass (issue 14): what is not synced is not versioned.
            args.extend(
                excludes
                    .lines()
                    .iter()
                    .filter(|p| !p.is_empty())
                    .map(|p| OsString::from(format!("--exclude={p}"))),
            );
            if once {
                args.push("--once".into());
            }
            ChildSpec { dir: dir.clone(), program: config.script.clone(), args }
        })
        .collect();
    children::start(specs, shutdown, once).map_err(|e| Error::Io {
        op: Op::Create,
        path: config.script.clone(),
        source: e,
    })
}
