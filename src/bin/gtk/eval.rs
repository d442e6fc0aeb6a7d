//! `gtk eval RUN` and `gtk eval --onnx FILE`.

use crate::cli::EvalArgs;
use anyhow::{Result, bail};
use candle_core::Device;
use gatekit::export::check::evaluate_onnx;
use gatekit::train::{format_metric, open_run};

pub fn run(args: EvalArgs) -> Result<()> {
    let data = args.data_dir.clone();
    if let Some(file) = &args.onnx {
        let r = evaluate_onnx(file, args.task.as_deref(), data.as_deref())?;
        println!(
            "{}: task {} test {} {} on {} examples (candle-onnx)",
            file.display(),
            r.task,
            r.metric_name,
            format_metric(r.metric),
            r.examples
        );
        return Ok(());
    }
    let Some(run) = &args.run else {
        bail!("give a run folder or --onnx FILE")
    };
    let trainer = open_run(run, data.as_deref(), &Device::Cpu)?;
    println!("run {} at step {}", run.display(), trainer.step());
    let records = trainer.evaluate()?;
    crate::train::print_results(&trainer, &records)
}
