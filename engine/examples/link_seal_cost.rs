//! What sealing costs the link benchmark (`:links`'s transfer each way):
//! one local node, connected sealed and plaintext in turn, its link
//! loopback or emulated (10gbe, 1gbe). Prints each round's up/down rates
//! and, per link, the median of sealed / plaintext.
//!
//! cargo run --release -p shardlab-engine --example link_seal_cost -- \
//!     target/release/shardlab [ROUNDS] [MIB]

use std::path::PathBuf;
use std::str::FromStr;

use shardlab_engine::cluster::coordinator::{Cluster, LocalNodeOptions};
use shardlab_engine::cluster::link_settings::LinkSettings;
use shardlab_engine::net::{LinkProfile, LinkSecurity};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let exe = PathBuf::from(
        args.next()
            .ok_or("usage: link_seal_cost SHARDLAB [ROUNDS] [MIB]")?,
    );
    let rounds: usize = args.next().map_or(Ok(5), |a| a.parse())?;
    let mib: u64 = args.next().map_or(Ok(32), |a| a.parse())?;
    let home = tempfile::tempdir()?;
    let opts = LocalNodeOptions {
        exe,
        home: home.path().to_path_buf(),
        threads_per_node: 1,
        threads_each: Vec::new(),
        mem_limits: Vec::new(),
        pin_cores: false,
        extra_args: Vec::new(),
    };
    let links = [
        ("loopback", None),
        ("10gbe", Some(LinkProfile::from_str("10gbe")?)),
        ("1gbe", Some(LinkProfile::from_str("1gbe")?)),
    ];
    println!("link,security,round,up_MBps,down_MBps");
    for (name, profile) in links {
        let mut ratios = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let mut rates = Vec::new();
            for security in [LinkSecurity::Sealed, LinkSecurity::Plaintext] {
                let settings = LinkSettings {
                    security,
                    ..LinkSettings::default()
                };
                let mut cluster = Cluster::spawn_local_with(1, &opts, "seal-cost", settings)?;
                cluster.emulate_links(profile.clone())?;
                // One transfer to warm up the buffers, then the measured one.
                cluster.measure_bandwidth(0, 1 << 20)?;
                let (up, down) = cluster.measure_bandwidth(0, mib << 20)?;
                println!(
                    "{name},{security:?},{round},{:.0},{:.0}",
                    up / 1e6,
                    down / 1e6
                );
                rates.push((up, down));
            }
            ratios.0.push(rates[0].0 / rates[1].0);
            ratios.1.push(rates[0].1 / rates[1].1);
        }
        println!(
            "# {name}: sealed/plaintext median up {:.3}, down {:.3}",
            median(ratios.0),
            median(ratios.1)
        );
    }
    Ok(())
}
