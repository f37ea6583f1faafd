//! The kernelspec: `kernel.json` in a Jupyter `kernels/shardlab` folder,
//! which is how front ends find the kernel and start it.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// The kernelspec's folder name (`jupyter kernelspec list` shows it).
pub const NAME: &str = "shardlab";

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("no home directory: set HOME or JUPYTER_DATA_DIR")]
    NoHome,
    #[error("--sys-prefix needs an active environment (VIRTUAL_ENV or CONDA_PREFIX is unset)")]
    NoPrefix,
    #[error("writing kernelspec {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("no shardlab kernelspec at {0}")]
    Missing(String),
    #[error("removing kernelspec {path}: {source}")]
    Remove {
        path: String,
        source: std::io::Error,
    },
}

/// Where to install, as `jupyter kernelspec install` names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The user's Jupyter data dir.
    User,
    /// The active virtualenv or conda environment.
    SysPrefix,
    Prefix(PathBuf),
}

/// Values of the environment variables the user data dir depends on.
pub struct Env {
    pub jupyter_data_dir: Option<String>,
    pub xdg_data_home: Option<String>,
    pub home: Option<String>,
    pub virtual_env: Option<String>,
    pub conda_prefix: Option<String>,
}

impl Env {
    pub fn current() -> Self {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Env {
            jupyter_data_dir: get("JUPYTER_DATA_DIR"),
            xdg_data_home: get("XDG_DATA_HOME"),
            home: get("HOME"),
            virtual_env: get("VIRTUAL_ENV"),
            conda_prefix: get("CONDA_PREFIX"),
        }
    }
}

/// The `kernels/shardlab` folder for `target`, as jupyter_core finds it.
pub fn spec_dir(target: &Target, env: &Env) -> Result<PathBuf, SpecError> {
    let data = match target {
        Target::User => match (&env.jupyter_data_dir, &env.xdg_data_home, &env.home) {
            (Some(d), _, _) => PathBuf::from(d),
            (None, _, Some(h)) if cfg!(target_os = "macos") => {
                Path::new(h).join("Library").join("Jupyter")
            }
            (None, Some(x), _) => Path::new(x).join("jupyter"),
            (None, None, Some(h)) => Path::new(h).join(".local").join("share").join("jupyter"),
            (None, _, None) => return Err(SpecError::NoHome),
        },
        Target::SysPrefix => {
            let prefix = env
                .virtual_env
                .as_ref()
                .or(env.conda_prefix.as_ref())
                .ok_or(SpecError::NoPrefix)?;
            Path::new(prefix).join("share").join("jupyter")
        }
        Target::Prefix(p) => p.join("share").join("jupyter"),
    };
    Ok(data.join("kernels").join(NAME))
}

/// kernel.json for a kernel started as `exe kernel --connection-file F`.
/// Interrupts come as messages, so Ctrl-C never reaches the process.
pub fn kernel_json(exe: &Path) -> Value {
    json!({
        "argv": [exe.display().to_string(), "kernel", "--connection-file", "{connection_file}"],
        "display_name": "shardlab",
        "language": "shardlab",
        "interrupt_mode": "message",
        "metadata": {"debugger": false},
    })
}

/// Writes the kernelspec; returns its folder.
pub fn install(target: &Target, env: &Env, exe: &Path) -> Result<PathBuf, SpecError> {
    let dir = spec_dir(target, env)?;
    let file = dir.join("kernel.json");
    let write_err = |source| SpecError::Write {
        path: file.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(write_err)?;
    let body = serde_json::to_string_pretty(&kernel_json(exe)).unwrap_or_default();
    std::fs::write(&file, body + "\n").map_err(write_err)?;
    Ok(dir)
}

/// Removes the kernelspec; returns the folder it was in.
pub fn uninstall(target: &Target, env: &Env) -> Result<PathBuf, SpecError> {
    let dir = spec_dir(target, env)?;
    if !dir.join("kernel.json").is_file() {
        return Err(SpecError::Missing(dir.display().to_string()));
    }
    std::fs::remove_dir_all(&dir).map_err(|source| SpecError::Remove {
        path: dir.display().to_string(),
        source,
    })?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(home: &str) -> Env {
        Env {
            jupyter_data_dir: None,
            xdg_data_home: None,
            home: Some(home.into()),
            virtual_env: None,
            conda_prefix: None,
        }
    }

    #[test]
    fn dirs_follow_jupyter_conventions() {
        let e = env("/home/u");
        let p = spec_dir(&Target::Prefix("/opt/x".into()), &e).unwrap();
        assert_eq!(p, Path::new("/opt/x/share/jupyter/kernels/shardlab"));
        assert!(matches!(
            spec_dir(&Target::SysPrefix, &e),
            Err(SpecError::NoPrefix)
        ));
        let mut e2 = env("/home/u");
        e2.virtual_env = Some("/venv".into());
        assert_eq!(
            spec_dir(&Target::SysPrefix, &e2).unwrap(),
            Path::new("/venv/share/jupyter/kernels/shardlab")
        );
        e2.jupyter_data_dir = Some("/data".into());
        assert_eq!(
            spec_dir(&Target::User, &e2).unwrap(),
            Path::new("/data/kernels/shardlab")
        );
    }

    #[test]
    fn install_writes_kernel_json_and_uninstall_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::Prefix(dir.path().into());
        let e = env("/nonexistent");
        let at = install(&target, &e, Path::new("/bin/shardlab")).unwrap();
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(at.join("kernel.json")).unwrap())
                .unwrap();
        assert_eq!(v["display_name"], "shardlab");
        assert_eq!(v["argv"][0], "/bin/shardlab");
        assert_eq!(v["argv"][3], "{connection_file}");
        assert_eq!(uninstall(&target, &e).unwrap(), at);
        assert!(!at.exists());
        assert!(matches!(uninstall(&target, &e), Err(SpecError::Missing(_))));
    }
}
