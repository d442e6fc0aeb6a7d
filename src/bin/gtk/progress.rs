//! Training progress: an indicatif bar on a terminal, plain log lines otherwise.

use gatekit::train::{Event, Record};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Instant;

pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    start: Instant,
    start_step: Option<usize>,
    total: usize,
    /// The step of the last probe printed as a line (probes come every few steps; a line
    /// about every tenth of the run is enough, the bar shows the latest).
    printed: usize,
}

impl Progress {
    pub fn new(total: usize, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stdout().is_terminal()).then(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} steps  {per_sec}  eta {eta}  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Progress {
            bar,
            quiet,
            start: Instant::now(),
            start_step: None,
            total,
            printed: 0,
        }
    }

    pub fn on(&mut self, event: Event) {
        match event {
            Event::Step { step, losses, .. } => {
                if self.start_step.is_none() {
                    self.start_step = Some(step - 1);
                    self.start = Instant::now();
                }
                if let Some(bar) = &self.bar {
                    bar.set_position(step as u64);
                    if step % 10 == 0 {
                        let msg: Vec<String> =
                            losses.iter().map(|(s, l)| format!("{s} {l:.4}")).collect();
                        bar.set_message(format!("loss {}", msg.join(" ")));
                    }
                }
            }
            Event::Eval {
                step,
                full,
                records,
            } => {
                if self.quiet {
                    return;
                }
                let line = summary(step, records, self.steps_per_second(step));
                let due = step == 0 || step >= self.printed + (self.total / 10).max(1);
                if !full && !due {
                    if let Some(bar) = &self.bar {
                        bar.set_message(line.trim_start_matches("step").trim().to_string());
                    }
                    return;
                }
                self.printed = step;
                match &self.bar {
                    Some(bar) => bar.println(line),
                    None => println!("{line}"),
                }
            }
        }
    }

    fn steps_per_second(&self, step: usize) -> Option<f64> {
        let done = step.checked_sub(self.start_step?)?;
        let secs = self.start.elapsed().as_secs_f64();
        (done > 0 && secs > 0.0).then(|| done as f64 / secs)
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// One eval as a few lines: mean test metric per strategy (the full evaluation's when it
/// ran, else the probe's), gated mask shares per parameter.
fn summary(step: usize, records: &[Record], rate: Option<f64>) -> String {
    let mut per_strategy: BTreeMap<&str, (f64, usize, &str)> = BTreeMap::new();
    let mut masks: BTreeMap<&str, (f64, f64, usize)> = BTreeMap::new();
    let full = records.iter().any(|r| matches!(r, Record::Eval { .. }));
    for r in records {
        match r {
            Record::Eval {
                strategy,
                split,
                metric,
                metric_name,
                ..
            }
            | Record::Probe {
                strategy,
                split,
                metric,
                metric_name,
                ..
            // Full evaluations: the test split; probes: the split they measure (`test`, or
            // `val` with `eval_split = "val"`), not the training batches.
            } if (if full { split == "test" } else { split != "train" })
                && full == matches!(r, Record::Eval { .. }) =>
            {
                let e = per_strategy
                    .entry(strategy)
                    .or_insert((0.0, 0, metric_name));
                e.0 += metric;
                e.1 += 1;
            }
            Record::Mask {
                param,
                off,
                undecided,
                ..
            } => {
                let e = masks.entry(param).or_insert((0.0, 0.0, 0));
                e.0 += off;
                e.1 += undecided;
                e.2 += 1;
            }
            _ => {}
        }
    }
    let mut line = format!("step {step:>6}");
    if let Some(rate) = rate {
        // Wall time since the first step, evaluations included (the end-of-run summary's
        // "training loop" rate leaves them out).
        line.push_str(&format!("  {rate:>7.1} steps/s incl. evals"));
    }
    let which = if full { "test" } else { "probe" };
    // Strategies in the order of the tables, not alphabetically.
    let mut per_strategy: Vec<_> = per_strategy.into_iter().collect();
    per_strategy.sort_by_key(|(s, _)| {
        gatekit::report::STRATEGIES
            .iter()
            .position(|k| k == s)
            .unwrap_or(usize::MAX)
    });
    for (s, (sum, n, name)) in &per_strategy {
        line.push_str(&format!("  {s} {which} {name} {:.4}", sum / *n as f64));
    }
    if !masks.is_empty() {
        let parts: Vec<String> = masks
            .iter()
            .map(|(p, (off, und, n))| {
                format!(
                    "{p} {:.1}%/{:.1}%",
                    100.0 * off / *n as f64,
                    100.0 * und / *n as f64
                )
            })
            .collect();
        line.push_str(&format!(
            "\n             gated masks off/undecided: {}",
            parts.join(", ")
        ));
    }
    line
}
