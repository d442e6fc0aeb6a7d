//! [`Scenario`]: which of van de Ven & Tolias's three continual-learning scenarios ("Three
//! scenarios for continual learning", 2019) a run is in: what every strategy is told at test
//! time and which output units answer. Tables and figures name it so rows of two scenarios are
//! never compared.

use serde::{Deserialize, Serialize};

/// A continual-learning scenario (`[run]` key `scenario`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Task-incremental: every strategy is told the task. Each task answers with its own
    /// output head: the units of its own classes when the tasks' classes are disjoint (split
    /// MNIST), else its own block of the model's outputs (permuted MNIST: task `t` owns units
    /// `10t..10t+10`, so the model needs 10 × tasks outputs). The softmax runs over the head
    /// only, so a head's weights get a gradient only from its task.
    Task,
    /// Domain-incremental: no task id, one head shared by every task.
    Domain,
    /// Class-incremental: no task id, one head over all the task set's classes.
    Class,
}

impl Scenario {
    /// The scenario's name in files and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Task => "task",
            Scenario::Domain => "domain",
            Scenario::Class => "class",
        }
    }

    /// Its name in a table caption: "Task-IL", "Domain-IL", "Class-IL".
    pub fn label(self) -> &'static str {
        match self {
            Scenario::Task => "Task-IL",
            Scenario::Domain => "Domain-IL",
            Scenario::Class => "Class-IL",
        }
    }

    /// Whether strategies are told the task at test time.
    pub fn gives_task_id(self) -> bool {
        self == Scenario::Task
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
