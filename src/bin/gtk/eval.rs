//! `gtk eval RUN`.

use crate::cli::{EvalArgs, data_dir};
use anyhow::Result;
use candle_core::Device;
use gatekit::train::open_run;

pub fn run(args: EvalArgs) -> Result<()> {
    let trainer = open_run(&args.run, data_dir(args.data_dir).as_deref(), &Device::Cpu)?;
    println!("run {} at step {}", args.run.display(), trainer.step());
    let records = trainer.evaluate()?;
    crate::train::print_results(&trainer, &records)
}
