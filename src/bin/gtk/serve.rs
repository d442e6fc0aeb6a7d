//! `gtk serve EXPORT_DIR`: parses the flags, reads the export into a model store and runs the
//! HTTP server of `gatekit::serve` until SIGTERM/SIGINT.

use anyhow::{Context, Result};
use clap::Args;
use gatekit::serve::auth::Token;
use gatekit::serve::batch::BatchConfig;
use gatekit::serve::http::{ServeConfig, serve, shutdown_signal};
use gatekit::serve::{ExportFolder, ModelStore};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `gtk serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// An export folder written by `gtk export` (weights.safetensors, masks.safetensors, ONNX
    /// files). Serve a `--binarize` export: the server answers with the 1-bit masks, W ⊙ 1[M > 0].
    pub export_dir: PathBuf,
    /// Address to listen on; the default answers only this machine.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// A file holding the bearer token every request (but /healthz) must send as
    /// `Authorization: Bearer TOKEN`.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Largest request body, bytes; larger ones are answered 413.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_body: usize,
    /// Memory for cached effective weights (W ⊙ mask) of recently used tasks, MiB; tasks
    /// not cached are built per batch.
    #[arg(long, default_value_t = 64)]
    pub cache_mb: usize,
    /// Most examples one forward pass batches together.
    #[arg(long, default_value_t = 64)]
    pub max_batch: usize,
    /// How long a request waits for others to batch with, milliseconds.
    #[arg(long, default_value_t = 2.0)]
    pub max_wait_ms: f64,
    /// Requests waiting at most; beyond, requests are answered 503.
    #[arg(long, default_value_t = 256)]
    pub queue: usize,
    /// Threads running forward passes.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Turn on POST /v1/admin/tasks (add an export's tasks on the same W) and
    /// DELETE /v1/admin/tasks/{task}.
    #[arg(long)]
    pub admin: bool,
}

pub fn run(args: ServeArgs) -> Result<()> {
    if !(0.0..=1000.0).contains(&args.max_wait_ms) {
        anyhow::bail!(
            "--max-wait-ms {} is out of range; use 0 to 1000",
            args.max_wait_ms
        );
    }
    if args.max_batch == 0 || args.queue == 0 || args.workers == 0 {
        anyhow::bail!("--max-batch, --queue and --workers must be at least 1");
    }
    let token = args.token_file.as_deref().map(Token::read).transpose()?;
    let folder = ExportFolder::read(&args.export_dir)?;
    let store = Arc::new(ModelStore::new(folder, args.cache_mb << 20));
    let config = ServeConfig {
        max_body: args.max_body,
        token,
        batch: BatchConfig {
            max_wait: Duration::from_secs_f64(args.max_wait_ms / 1000.0),
            max_batch: args.max_batch,
            queue: args.queue,
            workers: args.workers,
        },
        admin: args.admin,
        drain: Duration::from_secs(30),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .with_context(|| format!("--addr {}: cannot listen", args.addr))?;
        let local = listener.local_addr()?;
        eprintln!(
            "serving {} task(s) of model `{}` from {} on http://{local}",
            store.names().len(),
            store.model().name,
            args.export_dir.display()
        );
        serve(listener, store, config, shutdown_signal()).await?;
        eprintln!("stopped");
        Ok(())
    })
}
