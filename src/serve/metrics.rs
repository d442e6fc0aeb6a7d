//! The server's counters in Prometheus' text exposition format (`GET /metrics`): requests and
//! errors, latency histograms per task, batch sizes, loaded tasks, memory.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Latency bucket bounds, seconds.
const LATENCY: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Batch-size bucket bounds, examples.
const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len()];
        }
        for (c, b) in self.counts.iter_mut().zip(bounds) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in bounds.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// (route, status) → count.
    requests: BTreeMap<(String, u16), u64>,
    /// Task → latency of answered predictions.
    latency: BTreeMap<String, Histogram>,
    batches: Histogram,
    rejected_busy: u64,
}

/// The counters, shared by every connection.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// Label values are task names (checked portable) and fixed route names; escaped anyway.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One request answered on `route` with `status`.
    pub fn request(&self, route: &str, status: u16) {
        *self
            .lock()
            .requests
            .entry((route.to_string(), status))
            .or_default() += 1;
        if status == 503 {
            self.lock().rejected_busy += 1;
        }
    }

    /// A prediction for `task` took `seconds` (queue wait included).
    pub fn latency(&self, task: &str, seconds: f64) {
        self.lock()
            .latency
            .entry(task.to_string())
            .or_default()
            .observe(LATENCY, seconds);
    }

    /// One forward pass ran `examples` examples.
    pub fn batch(&self, examples: usize) {
        self.lock().batches.observe(BATCH, examples as f64);
    }

    /// Answered requests so far (all routes and statuses).
    pub fn total_requests(&self) -> u64 {
        self.lock().requests.values().sum()
    }

    /// The exposition text; `gauges` are extra `(name, help, value)` lines (tasks loaded,
    /// memory) the caller knows.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let inner = self.lock();
        let mut out = String::new();
        out.push_str("# HELP gatekit_requests_total HTTP requests answered, by route and status.\n# TYPE gatekit_requests_total counter\n");
        for ((route, status), n) in &inner.requests {
            let _ = writeln!(
                out,
                "gatekit_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        let errors: u64 = inner
            .requests
            .iter()
            .filter(|((_, s), _)| *s >= 400)
            .map(|(_, n)| n)
            .sum();
        out.push_str("# HELP gatekit_errors_total Requests answered with a 4xx or 5xx status.\n# TYPE gatekit_errors_total counter\n");
        let _ = writeln!(out, "gatekit_errors_total {errors}");
        out.push_str("# HELP gatekit_rejected_total Requests answered 503 (queue full or shutting down).\n# TYPE gatekit_rejected_total counter\n");
        let _ = writeln!(out, "gatekit_rejected_total {}", inner.rejected_busy);
        out.push_str("# HELP gatekit_predict_seconds Prediction latency per task, queueing included.\n# TYPE gatekit_predict_seconds histogram\n");
        for (task, h) in &inner.latency {
            h.write(
                &mut out,
                "gatekit_predict_seconds",
                &format!("task=\"{}\"", escape(task)),
                LATENCY,
            );
        }
        out.push_str("# HELP gatekit_batch_size Examples per forward pass.\n# TYPE gatekit_batch_size histogram\n");
        inner
            .batches
            .write(&mut out, "gatekit_batch_size", "", BATCH);
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}

/// This process's resident memory (Linux `/proc/self/statm`), bytes; `None` elsewhere.
pub fn resident_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.request("predict", 200);
        m.request("predict", 200);
        m.request("predict", 404);
        m.latency("t1", 0.0015);
        m.batch(3);
        let text = m.render(&[("gatekit_tasks_loaded", "Tasks loaded.", 4.0)]);
        assert!(text.contains("gatekit_requests_total{route=\"predict\",status=\"200\"} 2"));
        assert!(text.contains("gatekit_errors_total 1"));
        assert!(text.contains("gatekit_predict_seconds_bucket{task=\"t1\",le=\"0.001\"} 0"));
        assert!(text.contains("gatekit_predict_seconds_bucket{task=\"t1\",le=\"0.002\"} 1"));
        assert!(text.contains("gatekit_batch_size_bucket{le=\"4\"} 1"));
        assert!(text.contains("gatekit_batch_size_bucket{le=\"2\"} 0"));
        assert!(text.contains("gatekit_tasks_loaded 4"));
        assert_eq!(m.total_requests(), 3);
    }
}
