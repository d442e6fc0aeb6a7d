//! A run's results as `gtk train` and `gtk eval` print them: the table, the gated summary,
//! the binarization warning and, for sequential runs, the continual-learning tables.

use anyhow::Result;
use gatekit::train::{
    BinarizationWarning, ContinualSummary, GatedSummary, Record, TaskOrder, format_metric,
    format_significant as significant,
};

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
    // Every table names its scenario: rows of two scenarios are not comparable.
    match trainer.task_set().run.continual.scenario {
        Some(scenario) => println!(
            "scenario: {} ({})",
            scenario.label(),
            match scenario {
                gatekit::config::Scenario::Task =>
                    "every strategy is told the task; one output head per task",
                gatekit::config::Scenario::Domain => "no task id; one head shared by every task",
                gatekit::config::Scenario::Class => "no task id; one head over all classes",
            }
        ),
        None => println!(
            "scenario: unset (the gated model is told the task, the plain models are not: set run.scenario to compare with a published table)"
        ),
    }
    let width = summaries
        .iter()
        .map(|s| s.strategy.len())
        .max()
        .unwrap_or(0)
        .max(10);
    println!(
        "{:<width$} {:>12} {:>18} {:>12} {:>17}",
        "strategy",
        format!("average {metric}"),
        "backward transfer",
        "forgetting",
        "forward transfer"
    );
    // One seed: three significant digits (the run's own noise is larger than the fourth).
    let sequential = |s: &ContinualSummary, v: Option<f64>, signed: bool| match v {
        Some(v) if s.is_sequential() => significant(v, 3, signed),
        _ => "-".into(),
    };
    for s in &summaries {
        println!(
            "{:<width$} {:>12} {:>18} {:>12} {:>17}",
            s.strategy,
            significant(s.average, 3, false),
            sequential(s, Some(s.backward_transfer), true),
            sequential(s, Some(s.forgetting), false),
            sequential(s, s.forward_transfer, true),
        );
    }
    println!("{}", ContinualSummary::CAPTION);
    Ok(())
}
