//! Effective networks of recently used tasks under a byte budget (`--cache-mb`), least
//! recently used first out. With a budget of 0 nothing is kept and every batch builds its
//! task's weights from `W` and the mask (a few hundred µs for LeNet-5), which is what bounds the
//! memory of a server with thousands of tasks.

use crate::model::Network;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A task's network with its weights `W ⊙ 1[M_t > 0]` materialised.
#[derive(Debug)]
pub struct Effective {
    /// The network.
    pub net: Network,
    /// The export folder the task's mask came from (a task removed and added again from
    /// another folder must not hit the old entry).
    pub source: PathBuf,
    /// Bytes its weights take.
    pub bytes: usize,
}

/// An LRU list of effective networks.
#[derive(Debug)]
pub struct EffectiveCache {
    budget: usize,
    /// Most recently used last.
    entries: Vec<(String, Arc<Effective>)>,
    hits: u64,
    misses: u64,
}

impl EffectiveCache {
    /// An empty cache holding at most `budget` bytes.
    pub fn new(budget: usize) -> Self {
        EffectiveCache {
            budget,
            entries: Vec::new(),
            hits: 0,
            misses: 0,
        }
    }

    /// The cached network of `task` read from `source`, marked most recently used.
    pub fn get(&mut self, task: &str, source: &Path) -> Option<Arc<Effective>> {
        match self
            .entries
            .iter()
            .position(|(n, e)| n == task && e.source == source)
        {
            Some(i) => {
                let entry = self.entries.remove(i);
                let e = entry.1.clone();
                self.entries.push(entry);
                self.hits += 1;
                Some(e)
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Keeps `e` for `task` if it fits the budget, dropping least recently used entries.
    pub fn insert(&mut self, task: &str, e: Arc<Effective>) {
        self.remove(task);
        if e.bytes > self.budget {
            return;
        }
        while self.bytes() + e.bytes > self.budget && !self.entries.is_empty() {
            self.entries.remove(0);
        }
        self.entries.push((task.to_string(), e));
    }

    /// Drops `task`'s entry.
    pub fn remove(&mut self, task: &str) {
        self.entries.retain(|(n, _)| n != task);
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.entries.iter().map(|(_, e)| e.bytes).sum()
    }

    /// Tasks held, least recently used first.
    pub fn tasks(&self) -> Vec<&str> {
        self.entries.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Lookups answered from the cache and not.
    pub fn hits_misses(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ModelSpec, WeightInit};
    use candle_core::{DType, Device};

    fn entry(source: &str) -> Arc<Effective> {
        let spec = ModelSpec::parse(
            "name = \"t\"\ninput = [2]\n[[layer]]\ntype = \"linear\"\nout = 1\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let net = Network::new(
            &spec,
            WeightInit::Zeros,
            &mut crate::rng::Rng::new(0),
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        Arc::new(Effective {
            net,
            source: source.into(),
            bytes: 100,
        })
    }

    #[test]
    fn least_recently_used_goes_first_and_budget_holds() {
        let mut c = EffectiveCache::new(250);
        c.insert("a", entry("x"));
        c.insert("b", entry("x"));
        assert!(c.get("a", Path::new("x")).is_some());
        c.insert("c", entry("x"));
        assert_eq!(c.tasks(), vec!["a", "c"]);
        assert_eq!(c.bytes(), 200);
        // Another source is a miss.
        assert!(c.get("a", Path::new("y")).is_none());
        assert_eq!(c.hits_misses(), (1, 1));
        // A zero budget keeps nothing.
        let mut z = EffectiveCache::new(0);
        z.insert("a", entry("x"));
        assert_eq!(z.bytes(), 0);
        assert!(z.get("a", Path::new("x")).is_none());
    }
}
