use candle_core::Device;
use gatekit::{Strategy, TaskSet, Trainer};
fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mut set = TaskSet::load(std::path::Path::new(&args[1]))?;
    set.run.seed = args[2].parse()?;
    let dir = std::path::PathBuf::from(format!("/tmp/dbg{}", args[2]));
    let _ = std::fs::remove_dir_all(&dir);
    let mut tr = Trainer::create(set.clone(), &[Strategy::Gated], &dir, None, &Device::Cpu)?;
    tr.train(None, &mut |_| {})?;
    let tasks = set.build_tasks(None)?;
    let l = &tr.learners()[0];
    let w = l.network(0).params()[0]
        .1
        .as_tensor()
        .flatten_all()?
        .to_vec1::<f64>()?;
    let bank = l.masks().unwrap();
    let truths: Vec<_> = tasks
        .iter()
        .map(|t| t.true_mask().unwrap().weight)
        .collect();
    for i in 0..w.len() {
        let ms: Vec<f64> = (0..tasks.len())
            .map(|t| {
                bank.get(t).unwrap()[0]
                    .as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap()[i]
            })
            .collect();
        let ok = (0..tasks.len()).all(|t| (ms[t] > 0.0) == truths[t][i]);
        if !ok && truths.iter().any(|m| m[i]) {
            println!(
                "entry {i}: W={:.4} truth={:?} M={:?}",
                w[i],
                truths.iter().map(|m| m[i] as u8).collect::<Vec<_>>(),
                ms.iter().map(|m| format!("{m:.2}")).collect::<Vec<_>>()
            );
        }
    }
    Ok(())
}
