//! The statistics behind the paper's Figures 2 and 3 for every seed of a sweep (issue 25):
//! weight clustering per strategy and step, and pairwise mask agreement between tasks per
//! layer, as JSON on stdout. bench/paper/run.sh writes it to
//! bench/paper/results/[paper-recipe/]figures/NAME.json, where book/tools/claims.py tests the
//! paper's Figure 2 and 3 claims over seeds. Reads the run folders only.
//!
//! Usage: cargo run --release --example figure_stats -- SWEEP_FOLDER
use gatekit::report::statistics::figure_statistics;
use std::path::PathBuf;

fn main() {
    if let Err(e) = run() {
        eprintln!("figure_stats: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("usage: figure_stats SWEEP_FOLDER"))?;
    // The sweep's members are seed-N folders; order them by N.
    let mut members: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let seed = name.strip_prefix("seed-")?.parse().ok()?;
            Some((seed, e.path()))
        })
        .collect();
    members.sort();
    if members.is_empty() {
        anyhow::bail!("{}: no seed-N run folders (is it a sweep?)", dir.display());
    }
    let mut seeds = Vec::new();
    let mut clustering: serde_json::Map<String, serde_json::Value> = serde_json::Map::new();
    let mut agreement = Vec::new();
    for (seed, member) in members {
        let stats = figure_statistics(&member)?;
        seeds.push(seed);
        for (strategy, series) in stats.clustering {
            let e = clustering
                .entry(strategy)
                .or_insert_with(|| serde_json::Value::Array(Vec::new()));
            if let serde_json::Value::Array(a) = e {
                a.push(serde_json::to_value(series)?);
            }
        }
        agreement.push(serde_json::to_value(stats.mask_agreement)?);
    }
    let out = serde_json::json!({
        "format": "gatekit-figure-stats-1",
        "seeds": seeds,
        "clustering": clustering,
        "mask_agreement": agreement,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
