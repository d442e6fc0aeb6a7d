//! Regression test for a known trap: candle gradients can carry graph history, and storing
//! them in momentum or Adam buffers chains every step's graph (measured in a probe: ~4 MB per
//! step). Resident memory must stay flat over thousands of steps. Alone in its own test binary
//! so other tests do not disturb the measurement.

mod common;
use candle_core::Device;
use gatekit::TaskSet;
use gatekit::train::{Strategy, Trainer};

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn rss_stays_flat_with_momentum_and_adam_state() {
    for engine in ["fast", "reference"] {
        rss_stays_flat(engine);
    }
}

fn rss_stays_flat(engine: &str) {
    let text = format!(
        "[run]\nmodel = \"{}\"\nsteps = 4000\noptimizer = \"momentum\"\neval_every = 4000\nengine = \"{engine}\"\n\
         [defaults]\nkind = \"sinusoid\"\ntrain = 64\ntest = 32\n\
         [[task]]\nname = \"a\"\n[[task]]\nname = \"b\"\n",
        common::repo("models/mlp.toml").display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("set.toml");
    std::fs::write(&path, text).unwrap();
    let set = TaskSet::load(&path).unwrap();
    let mut trainer = Trainer::create(
        set,
        &[Strategy::Gated, Strategy::Separate],
        &tmp.path().join("run"),
        None,
        &Device::Cpu,
    )
    .unwrap();
    trainer.train(Some(500), &mut |_| {}).unwrap();
    let before = rss_kb();
    trainer.train(Some(3500), &mut |_| {}).unwrap();
    let after = rss_kb();
    // A leak of one graph per step would be >100 MB here; allocator noise is a few MB.
    assert!(
        after < before + 16 * 1024,
        "{engine} engine: RSS grew from {before} kB to {after} kB over 3000 steps"
    );
}
