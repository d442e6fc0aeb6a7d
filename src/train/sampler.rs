//! The paper's task schedule: pick a task uniformly at random, train it for N consecutive
//! steps, repeat; each step's batch indices are drawn uniformly with replacement.
//!
//! One sampler drives every strategy of a run, so gated, shared and separate see exactly the
//! same task and batch sequence. Its whole state is serialisable for resuming.

use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// Task and batch draws.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSampler {
    rng: Rng,
    steps_per_task: usize,
    current: usize,
    left: usize,
}

impl TaskSampler {
    /// A sampler for a run seed; `steps_per_task` is the paper's N.
    pub fn new(seed: u64, steps_per_task: usize) -> Self {
        TaskSampler {
            rng: Rng::stream(seed, "sampler", 0),
            steps_per_task: steps_per_task.max(1),
            current: 0,
            left: 0,
        }
    }

    /// The next step's task among `num_tasks`.
    pub fn next_task(&mut self, num_tasks: usize) -> usize {
        if self.left == 0 {
            self.current = self.rng.below(num_tasks);
            self.left = self.steps_per_task;
        }
        self.left -= 1;
        self.current
    }

    /// Checks a deserialized sampler against the run it belongs to, so that an edited
    /// `state.json` cannot make it divide by zero or pick a task that does not exist.
    pub fn check(&self, num_tasks: usize, steps_per_task: usize) -> Result<(), String> {
        if self.steps_per_task != steps_per_task.max(1) {
            return Err(format!(
                "steps_per_task is {}, the run's config says {steps_per_task}",
                self.steps_per_task
            ));
        }
        if self.current >= num_tasks {
            return Err(format!(
                "current task {} does not exist (the run has {num_tasks})",
                self.current
            ));
        }
        if self.left > self.steps_per_task {
            return Err(format!(
                "{} steps left on the current task, more than steps_per_task {}",
                self.left, self.steps_per_task
            ));
        }
        Ok(())
    }

    /// `batch` indices into a training set of `len` examples, with replacement.
    pub fn batch(&mut self, len: usize, batch: usize) -> Vec<usize> {
        (0..batch).map(|_| self.rng.below(len)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_task_for_n_steps() {
        let mut s = TaskSampler::new(3, 5);
        let seq: Vec<usize> = (0..50).map(|_| s.next_task(4)).collect();
        for chunk in seq.chunks(5) {
            assert!(chunk.iter().all(|&t| t == chunk[0]), "{seq:?}");
        }
        assert!(seq.iter().any(|&t| t != seq[0]));
    }
}
