//! `shardlab kernel --connection-file F` runs the Jupyter kernel;
//! `shardlab kernel install|uninstall [--user|--sys-prefix|--prefix P]`
//! manages its kernelspec.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use shardlab_kernel::spec::{self, Env, Target};

#[derive(Args, Debug)]
pub struct KernelArgs {
    #[command(subcommand)]
    pub action: Option<KernelAction>,
    /// The connection file Jupyter wrote (front ends pass it).
    #[arg(long = "connection-file")]
    pub connection_file: Option<PathBuf>,
    /// Worker threads per node started with `:connect local`.
    #[arg(long = "node-threads", default_value_t = 1)]
    pub node_threads: usize,
}

#[derive(Subcommand, Debug)]
pub enum KernelAction {
    /// Write the "shardlab" kernelspec (default: --user).
    Install(Where),
    /// Remove the kernelspec written by `install` with the same flags.
    Uninstall(Where),
}

#[derive(Args, Debug)]
#[group(multiple = false)]
pub struct Where {
    /// The user's Jupyter data directory.
    #[arg(long)]
    pub user: bool,
    /// The active virtualenv or conda environment.
    #[arg(long = "sys-prefix")]
    pub sys_prefix: bool,
    /// PREFIX/share/jupyter/kernels.
    #[arg(long)]
    pub prefix: Option<PathBuf>,
}

impl Where {
    fn target(&self) -> Target {
        match (&self.prefix, self.sys_prefix) {
            (Some(p), _) => Target::Prefix(p.clone()),
            (None, true) => Target::SysPrefix,
            (None, false) => Target::User,
        }
    }
}

pub fn run(args: KernelArgs) -> Result<()> {
    match (args.action, args.connection_file) {
        (Some(KernelAction::Install(w)), _) => {
            let exe = std::env::current_exe().context("finding the shardlab binary")?;
            let dir = spec::install(&w.target(), &Env::current(), &exe)?;
            println!("installed kernelspec shardlab in {}", dir.display());
            Ok(())
        }
        (Some(KernelAction::Uninstall(w)), _) => {
            let dir = spec::uninstall(&w.target(), &Env::current())?;
            println!("removed kernelspec {}", dir.display());
            Ok(())
        }
        (None, Some(file)) => {
            let session = super::shell::new_session(args.node_threads)?;
            shardlab_kernel::run(&file, session)?;
            Ok(())
        }
        (None, None) => {
            bail!("`shardlab kernel` needs --connection-file F, or install / uninstall")
        }
    }
}
