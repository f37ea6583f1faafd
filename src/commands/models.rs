//! `shardlab models pull|list`.

use anyhow::Result;
use clap::Subcommand;
use shardlab_engine::model::store::ModelStore;

use super::progress::print_pull_event;

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Install a model by alias (smollm2).
    Pull { alias: String },
    /// Show the cached models with their sizes.
    List,
}

pub fn run(cmd: ModelsCommand) -> Result<()> {
    let store = ModelStore::from_env()?;
    match cmd {
        ModelsCommand::Pull { alias } => {
            let path = store.pull(&alias, &mut print_pull_event)?;
            println!("{}", path.display());
        }
        ModelsCommand::List => {
            let models = store.list()?;
            if models.is_empty() {
                println!(
                    "no models in {} (try: shardlab models pull smollm2)",
                    store.home().display()
                );
            }
            for m in models {
                println!(
                    "{:<10} {:>9.1} MiB  {:<4}  {}",
                    m.alias.as_deref().unwrap_or("-"),
                    m.bytes as f64 / 1048576.0,
                    m.kind,
                    m.path.display()
                );
            }
            let aliases: Vec<&str> = ModelStore::aliases().iter().map(|a| a.name).collect();
            println!("aliases: {}", aliases.join(", "));
        }
    }
    Ok(())
}
