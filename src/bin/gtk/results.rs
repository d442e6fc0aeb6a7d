//! A run's results as `gtk train` and `gtk eval` print them: the table, the gated summary,
//! the binarization warning and, for sequential runs, the continual-learning tables.

use anyhow::Result;
use gatekit::train::{BinarizationWarning, GatedSummary, Record, TaskOrder, format_metric};

pub fn print_results(trainer: &gatekit::Run, records: &[Record]) -> Result<()> {
    println!("\n{}", trainer.table(records)?);
    let summary = GatedSummary::of(records);
    if let Some(mean) = summary.binarized_metric {
        let metric = records
            .iter()
            .find_map(|r| match r {
                Record::Eval { metric_name, .. } => Some(metric_name.as_str()),
                _ => None,
            })
            .unwrap_or("metric");
        println!(
            "gated, binarized masks W ⊙ 1[M > 0]: test {metric} {} (mean over tasks)",
            format_metric(mean)
        );
        let parts: Vec<String> = summary
            .off_share
            .iter()
            .map(|(p, off)| format!("{p} {:.1}%", 100.0 * off))
            .collect();
        println!(
            "gated, weights switched off (mean over tasks): {}",
            parts.join(", ")
        );
    }
    if let Some(recovered) = summary.recovered {
        println!(
            "gated, generating mask entries recovered (identifiable entries): {:.1}% mean over tasks",
            100.0 * recovered
        );
    }
    if let Some(warning) = BinarizationWarning::from_records(records, &trainer.task_set().run) {
        eprintln!("{warning}");
    }
    print_continual(trainer)?;
    Ok(())
}

/// Sequential runs: each strategy's accuracy matrix, then average, backward transfer and
/// forgetting side by side.
fn print_continual(trainer: &gatekit::Run) -> Result<()> {
    if trainer.task_set().run.schedule.order != TaskOrder::Sequential {
        return Ok(());
    }
    let summaries = trainer.continual_summaries()?;
    if summaries.is_empty() {
        println!("continual learning: the accuracy matrix is complete once every phase has ended");
        return Ok(());
    }
    for s in &summaries {
        println!(
            "\n{}",
            s.matrix_table(trainer.task_set().run.schedule.phase_steps)
        );
    }
    let metric = &summaries[0].metric_name;
    println!(
        "{:<10} {:>12} {:>18} {:>12}",
        "strategy",
        format!("average {metric}"),
        "backward transfer",
        "forgetting"
    );
    for s in &summaries {
        println!(
            "{:<10} {:>12} {:>18} {:>12}",
            s.strategy,
            format_metric(s.average),
            if s.is_sequential() {
                format!("{:+.4}", s.backward_transfer)
            } else {
                "-".into()
            },
            if s.is_sequential() {
                format!("{:.4}", s.forgetting)
            } else {
                "-".into()
            }
        );
    }
    if summaries.iter().any(|s| !s.is_sequential()) {
        println!("(joint trains on every task throughout: no backward transfer or forgetting)");
    }
    Ok(())
}
