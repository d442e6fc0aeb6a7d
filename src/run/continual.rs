//! Continual learning: tasks that arrive one after another (`schedule = "sequential"`), what
//! happens to `W` across phases (`w_policy`), and the measures continual-learning papers
//! report from the accuracy matrix.
//!
//! The matrix `R[i][j]` is task `j`'s test metric after phase `i` (every task, seen or not, is
//! evaluated at the end of every phase). From it, with `T` tasks:
//! - average accuracy `ACC = (1/T) Σ_j R[T-1][j]`;
//! - backward transfer `BWT = 1/(T-1) Σ_{j<T-1} (R[T-1][j] − R[j][j])` (Lopez-Paz & Ranzato,
//!   "Gradient Episodic Memory for Continual Learning", NeurIPS 2017): negative when later
//!   phases hurt earlier tasks;
//! - forgetting `F = 1/(T-1) Σ_{j<T-1} max_{l<T-1} (R[l][j] − R[T-1][j])` (Chaudhry et al.,
//!   "Riemannian Walk for Incremental Learning", ECCV 2018): the drop from each task's best
//!   to its final metric, ≥ 0.
//!
//! - forward transfer `FWT = 1/(T-1) Σ_{j≥1} (R[j-1][j] − b_j)` (Lopez-Paz & Ranzato), with
//!   `b_j` task `j`'s metric at initialisation (before the first step; the run logs it as
//!   phase 0): positive when earlier phases already help a task before its own phase.
//!
//! All three divide by `T − 1`, the tasks that have a later (BWT, forgetting) or an earlier
//! (FWT) phase, as the papers' formulas do; the GEM code divides by `T`. They are measures of
//! a sequential learner only: `joint` trains on every task throughout, and its rows show none
//! of them.
//!
//! For a regression metric (MSE, lower is better) the same formulas are applied to `−MSE`, so
//! a negative BWT and a positive forgetting always mean "worse than before".

use serde::{Deserialize, Serialize};

/// The accuracy matrix of one strategy and the measures derived from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContinualSummary {
    /// gated, finetune, separate or joint.
    pub strategy: String,
    /// `"accuracy"` or `"mse"`.
    pub metric_name: String,
    /// Task names, in phase order.
    pub tasks: Vec<String>,
    /// `matrix[i][j]`: task `j`'s test metric after phase `i`.
    pub matrix: Vec<Vec<f64>>,
    /// Mean final metric over all tasks.
    pub average: f64,
    /// Backward transfer (0 with fewer than 2 tasks).
    pub backward_transfer: f64,
    /// Mean forgetting of all but the last task (0 with fewer than 2 tasks).
    pub forgetting: f64,
    /// Each task's metric at initialisation (GEM's `b_j`), when the run measured it (runs
    /// written before gatekit did have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<Vec<f64>>,
    /// Forward transfer (with [`ContinualSummary::initial`]; none for `joint` or without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_transfer: Option<f64>,
    /// The run's continual-learning scenario (`task`, `domain`, `class`), when it set one:
    /// tables name it and never mix two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
}

impl ContinualSummary {
    /// The caption under a table of these measures: what they are and which convention.
    pub const CAPTION: &'static str = "(average: over all tasks after the last phase. backward transfer, forgetting and forward transfer (against each task's metric at initialisation, GEM's b_j) divide by T − 1, as Lopez-Paz & Ranzato's and Chaudhry et al.'s formulas do; the GEM code divides by T. joint trains on every task throughout: not a sequential learner, so none of the three)";

    /// The measures of a complete `T × T` matrix (`higher_is_better` false for MSE).
    pub fn new(
        strategy: &str,
        metric_name: &str,
        tasks: Vec<String>,
        matrix: Vec<Vec<f64>>,
        higher_is_better: bool,
    ) -> Self {
        let t = tasks.len();
        let sign = if higher_is_better { 1.0 } else { -1.0 };
        let r = |i: usize, j: usize| sign * matrix[i][j];
        let last = t.saturating_sub(1);
        let average = if t == 0 {
            0.0
        } else {
            (0..t).map(|j| matrix[last][j]).sum::<f64>() / t as f64
        };
        let (backward_transfer, forgetting) = if t < 2 {
            (0.0, 0.0)
        } else {
            let bwt = (0..last).map(|j| r(last, j) - r(j, j)).sum::<f64>() / last as f64;
            let f = (0..last)
                .map(|j| {
                    let best = (0..last).map(|l| r(l, j)).fold(f64::NEG_INFINITY, f64::max);
                    best - r(last, j)
                })
                .sum::<f64>()
                / last as f64;
            (bwt, f)
        };
        ContinualSummary {
            strategy: strategy.into(),
            metric_name: metric_name.into(),
            tasks,
            matrix,
            average,
            backward_transfer,
            forgetting,
            initial: None,
            forward_transfer: None,
            scenario: None,
        }
    }

    /// Adds each task's metric at initialisation `initial` (one per task, in the matrix's
    /// column order) and, for a sequential strategy with at least 2 tasks, the forward
    /// transfer `FWT = 1/(T-1) Σ_{j≥1} (R[j-1][j] − b_j)` (on `−MSE` for a regression metric).
    pub fn with_initial(mut self, initial: Vec<f64>, higher_is_better: bool) -> Self {
        let t = self.tasks.len();
        let sign = if higher_is_better { 1.0 } else { -1.0 };
        if self.is_sequential() && t >= 2 && initial.len() == t {
            let sum: f64 = (1..t)
                .map(|j| sign * (self.matrix[j - 1][j] - initial[j]))
                .sum();
            self.forward_transfer = Some(sum / (t - 1) as f64);
        }
        self.initial = Some(initial);
        self
    }

    /// Whether the strategy learns the tasks one after another. `joint` trains on every task
    /// from the start: its matrix rows are checkpoints at the phases' ends, not phases, and
    /// backward transfer and forgetting say nothing about it (they are not shown for it).
    pub fn is_sequential(&self) -> bool {
        self.strategy != "joint"
    }

    /// The label of each matrix row: `after TASK` for a sequential strategy, `step N` for
    /// joint (`phase_steps` known) or `checkpoint i`.
    pub fn row_labels(&self, phase_steps: Option<usize>) -> Vec<String> {
        (0..self.matrix.len())
            .map(|i| match (self.is_sequential(), phase_steps) {
                (true, _) => format!("after {}", self.tasks[i]),
                (false, Some(p)) => format!("step {}", (i + 1) * p),
                (false, None) => format!("checkpoint {}", i + 1),
            })
            .collect()
    }

    /// The matrix as a text table: one row per phase (per phase end for joint), one column
    /// per task.
    pub fn matrix_table(&self, phase_steps: Option<usize>) -> String {
        let labels = self.row_labels(phase_steps);
        let width = self.tasks.iter().map(|t| t.len()).max().unwrap_or(0).max(7);
        let label_w = labels.iter().map(|l| l.len()).max().unwrap_or(0).max(9);
        let mut s = if self.is_sequential() {
            format!(
                "{} {} after each phase (row: phase, column: task)\n{:>label_w$}",
                self.strategy, self.metric_name, "phase"
            )
        } else {
            format!(
                "{} {} at the end of each phase (trained on every task throughout; row: step, column: task)\n{:>label_w$}",
                self.strategy, self.metric_name, ""
            )
        };
        for t in &self.tasks {
            s += &format!(" {t:>width$}");
        }
        s.push('\n');
        for (i, row) in self.matrix.iter().enumerate() {
            s += &format!("{:>label_w$}", labels[i]);
            for v in row {
                s += &format!(" {:>width$}", super::table::format_metric(*v));
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_match_a_hand_computed_matrix() {
        // Three tasks; task 0 drops from 0.9 to 0.5, task 1 peaks at 0.8 then ends at 0.6.
        let m = vec![
            vec![0.9, 0.1, 0.1],
            vec![0.7, 0.8, 0.2],
            vec![0.5, 0.6, 0.95],
        ];
        let s = ContinualSummary::new(
            "gated",
            "accuracy",
            vec!["a".into(), "b".into(), "c".into()],
            m,
            true,
        );
        assert!((s.average - (0.5 + 0.6 + 0.95) / 3.0).abs() < 1e-12);
        // BWT = ((0.5 − 0.9) + (0.6 − 0.8)) / 2 = −0.3.
        assert!(
            (s.backward_transfer + 0.3).abs() < 1e-12,
            "{}",
            s.backward_transfer
        );
        // F = ((0.9 − 0.5) + (0.8 − 0.6)) / 2 = 0.3.
        assert!((s.forgetting - 0.3).abs() < 1e-12, "{}", s.forgetting);
    }

    #[test]
    fn forward_transfer_uses_the_accuracy_at_initialisation() {
        let m = vec![
            vec![0.9, 0.3, 0.1],
            vec![0.7, 0.8, 0.25],
            vec![0.5, 0.6, 0.95],
        ];
        let tasks = || vec!["a".into(), "b".into(), "c".into()];
        let b = vec![0.1, 0.2, 0.1];
        let s = ContinualSummary::new("ewc", "accuracy", tasks(), m.clone(), true)
            .with_initial(b.clone(), true);
        // FWT = ((0.3 − 0.2) + (0.25 − 0.1)) / 2 = 0.125.
        let fwt = s.forward_transfer.unwrap();
        assert!((fwt - 0.125).abs() < 1e-12, "{fwt}");
        assert_eq!(s.initial.as_deref(), Some(&b[..]));
        // joint is not sequential: no FWT, as no BWT or forgetting is shown for it.
        let joint =
            ContinualSummary::new("joint", "accuracy", tasks(), m, true).with_initial(b, true);
        assert_eq!(joint.forward_transfer, None);
        // MSE: negated, so lower MSE than at initialisation is positive transfer.
        let mse = ContinualSummary::new(
            "si",
            "mse",
            vec!["a".into(), "b".into()],
            vec![vec![1.0, 2.0], vec![3.0, 0.5]],
            false,
        )
        .with_initial(vec![4.0, 5.0], false);
        assert!((mse.forward_transfer.unwrap() - 3.0).abs() < 1e-12);
    }

    #[test]
    fn joint_rows_are_steps_not_phases() {
        let m = vec![vec![0.9, 0.8], vec![0.95, 0.9]];
        let joint = ContinualSummary::new(
            "joint",
            "accuracy",
            vec!["a".into(), "b".into()],
            m.clone(),
            true,
        );
        assert!(!joint.is_sequential());
        assert_eq!(joint.row_labels(Some(100)), vec!["step 100", "step 200"]);
        let table = joint.matrix_table(Some(100));
        assert!(table.contains("\n step 200  0.9500"), "{table}");
        assert!(!table.contains("after"), "{table}");
        let gated =
            ContinualSummary::new("gated", "accuracy", vec!["a".into(), "b".into()], m, true);
        assert_eq!(gated.row_labels(Some(100)), vec!["after a", "after b"]);
    }

    #[test]
    fn mse_is_negated_so_worse_is_negative_transfer() {
        let m = vec![vec![1.0, 5.0], vec![3.0, 1.0]];
        let s = ContinualSummary::new("finetune", "mse", vec!["a".into(), "b".into()], m, false);
        assert!((s.backward_transfer + 2.0).abs() < 1e-12);
        assert!((s.forgetting - 2.0).abs() < 1e-12);
        assert!((s.average - 2.0).abs() < 1e-12);
    }
}
