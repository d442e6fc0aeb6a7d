//! `gtk serve`: one process answers every task of an export from the shared `W` (float32, held
//! once) and each task's 1-bit mask, so a task costs `params / 8` bytes of memory instead of a
//! model copy.
//!
//! - [`source`]: what is served — an export folder, or a run folder read at its last commit
//!   (masks binarized, as `gtk export --binarize` writes them);
//! - [`store`]: the export folder read into memory (W once, packed masks, layer state, each
//!   task's input transform), tasks added and removed while serving;
//! - [`heap`]: the allocator's freed pages handed back once an export is read, so a task
//!   costs its packed bits and not the parsing that loaded it;
//! - [`cache`]: effective weights `W ⊙ 1[M_t > 0]` of recently used tasks under a byte budget
//!   (LRU), built on the fly otherwise;
//! - [`batch`]: requests to the same task arriving together run as one batch (bounded wait,
//!   bounded batch), behind a bounded queue that answers "busy" when full;
//! - [`codec`]: request and response bodies (JSON nested arrays, `.npy`);
//! - [`metrics`]: counters and histograms in Prometheus' text format;
//! - [`watch`]: a folder polled for new exports (e.g. `gtk adapt` output) loaded while serving;
//! - [`auth`]: the bearer token, compared in constant time;
//! - [`http`]: the routes and the server with graceful shutdown.

pub mod auth;
pub mod batch;
pub mod cache;
pub mod codec;
pub mod error;
pub mod heap;
pub mod http;
pub mod metrics;
pub mod source;
pub mod store;
pub mod watch;

pub use error::ServeError;
pub use store::{ExportFolder, ModelStore, TaskView};
