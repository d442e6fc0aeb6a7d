//! The paper's task schedule: pick a task uniformly at random, train it for N consecutive
//! steps, repeat; each step's batch indices are drawn uniformly with replacement.
//!
//! One sampler drives every strategy of a run, so gated, shared and separate see exactly the
//! same task and batch sequence. Its whole state is serialisable for resuming.
//!
//! The sequential schedule (continual learning) uses the same sampler with fixed phases: task
//! `t` for steps `t·phase_steps .. (t+1)·phase_steps`, batches drawn as before.

use crate::params::TaskId;
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// Task and batch draws.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSampler {
    rng: Rng,
    steps_per_task: usize,
    current: usize,
    left: usize,
    /// Steps per phase of the sequential schedule; `None` for the paper's random schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    phase_steps: Option<usize>,
    /// Tasks drawn so far (sequential schedule only).
    #[serde(default, skip_serializing_if = "is_zero")]
    drawn: usize,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

impl TaskSampler {
    /// A sampler for a run seed; `steps_per_task` is the paper's N.
    pub fn new(seed: u64, steps_per_task: usize) -> Self {
        TaskSampler {
            rng: Rng::stream(seed, "sampler", 0),
            steps_per_task: steps_per_task.max(1),
            current: 0,
            left: 0,
            phase_steps: None,
            drawn: 0,
        }
    }

    /// The sequential schedule: tasks in order, `phase_steps` steps each.
    pub fn sequential(seed: u64, phase_steps: usize) -> Self {
        TaskSampler {
            phase_steps: Some(phase_steps.max(1)),
            ..TaskSampler::new(seed, 1)
        }
    }

    /// The random schedule from a stream of its own, for a strategy that trains interleaved
    /// next to a sequential run (`joint`): it must not disturb the run's own draws.
    pub fn interleaved_beside(seed: u64, steps_per_task: usize) -> Self {
        TaskSampler {
            rng: Rng::stream(seed, "joint-sampler", 0),
            ..TaskSampler::new(seed, steps_per_task)
        }
    }

    /// The next step's task among `num_tasks`.
    pub fn next_task(&mut self, num_tasks: usize) -> TaskId {
        if let Some(p) = self.phase_steps {
            self.current = (self.drawn / p).min(num_tasks.saturating_sub(1));
            self.drawn += 1;
            return TaskId(self.current);
        }
        if self.left == 0 {
            self.current = self.rng.below(num_tasks);
            self.left = self.steps_per_task;
        }
        self.left -= 1;
        TaskId(self.current)
    }

    /// Checks a deserialized sampler against the run it belongs to, so that an edited
    /// `state.json` cannot make it divide by zero or pick a task that does not exist.
    pub fn check(
        &self,
        num_tasks: usize,
        steps_per_task: usize,
        phase_steps: Option<usize>,
    ) -> Result<(), SamplerMismatch> {
        if self.phase_steps != phase_steps {
            return Err(SamplerMismatch::PhaseSteps {
                stored: self.phase_steps,
                config: phase_steps,
            });
        }
        if self.phase_steps.is_some() {
            return Ok(());
        }
        if self.steps_per_task != steps_per_task.max(1) {
            return Err(SamplerMismatch::StepsPerTask {
                stored: self.steps_per_task,
                config: steps_per_task,
            });
        }
        if self.current >= num_tasks {
            return Err(SamplerMismatch::NoSuchTask {
                current: TaskId(self.current),
                tasks: num_tasks,
            });
        }
        if self.left > self.steps_per_task {
            return Err(SamplerMismatch::StepsLeft {
                left: self.left,
                steps_per_task: self.steps_per_task,
            });
        }
        Ok(())
    }

    /// `batch` indices into a training set of `len` examples, with replacement.
    pub fn batch(&mut self, len: usize, batch: usize) -> Vec<usize> {
        (0..batch).map(|_| self.rng.below(len)).collect()
    }
}

/// How a stored sampler disagrees with its run's configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SamplerMismatch {
    /// The phase length differs.
    #[error("phase_steps is {stored:?}, the run's config says {config:?}")]
    PhaseSteps {
        /// In `state.json`.
        stored: Option<usize>,
        /// In the run's config.
        config: Option<usize>,
    },
    /// The steps per task differ.
    #[error("steps_per_task is {stored}, the run's config says {config}")]
    StepsPerTask {
        /// In `state.json`.
        stored: usize,
        /// In the run's config.
        config: usize,
    },
    /// The current task is out of range.
    #[error("current {current} does not exist (the run has {tasks})")]
    NoSuchTask {
        /// The stored current task.
        current: TaskId,
        /// The run's task count.
        tasks: usize,
    },
    /// More steps left than a task gets.
    #[error("{left} steps left on the current task, more than steps_per_task {steps_per_task}")]
    StepsLeft {
        /// The stored steps left.
        left: usize,
        /// The stored steps per task.
        steps_per_task: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_task_for_n_steps() {
        let mut s = TaskSampler::new(3, 5);
        let seq: Vec<usize> = (0..50).map(|_| s.next_task(4).index()).collect();
        for chunk in seq.chunks(5) {
            assert!(chunk.iter().all(|&t| t == chunk[0]), "{seq:?}");
        }
        assert!(seq.iter().any(|&t| t != seq[0]));
    }

    #[test]
    fn sequential_phases_follow_file_order() {
        let mut s = TaskSampler::sequential(3, 4);
        let seq: Vec<usize> = (0..12).map(|_| s.next_task(3).index()).collect();
        assert_eq!(seq, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
    }

    #[test]
    fn the_joint_stream_differs_from_the_runs() {
        let mut a = TaskSampler::new(3, 1);
        let mut b = TaskSampler::interleaved_beside(3, 1);
        let (x, y): (Vec<TaskId>, Vec<TaskId>) =
            (0..40).map(|_| (a.next_task(5), b.next_task(5))).unzip();
        assert_ne!(x, y);
    }
}
