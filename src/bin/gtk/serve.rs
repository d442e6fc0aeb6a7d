//! `gtk serve EXPORT_DIR|RUN`: parses the flags, reads the export (or the run at its last
//! commit) into a model store and runs the HTTP server of `gatekit::serve` until
//! SIGTERM/SIGINT.

use crate::cli::ServeArgs;
use anyhow::{Context, Result};
use gatekit::run::BnRecalibration;
use gatekit::serve::auth::Token;
use gatekit::serve::batch::BatchConfig;
use gatekit::serve::http::{ServeConfig, WatchConfig, serve, shutdown_signal};
use gatekit::serve::watch::Watcher;
use gatekit::serve::{ExportFolder, ModelStore};
use std::sync::Arc;
use std::time::Duration;

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
    if !(10..=3_600_000).contains(&args.watch_ms) {
        anyhow::bail!(
            "--watch-ms {} is out of range; use 10 to 3600000",
            args.watch_ms
        );
    }
    if let Some(dir) = &args.watch {
        Watcher::new(dir)?;
    }
    let token = args.token_file.as_deref().map(Token::read).transpose()?;
    let folder = ExportFolder::open(
        &args.source,
        args.data.data_dir.as_deref(),
        crate::runs::changed_data(args.allow_changed_data),
        BnRecalibration {
            batches: args.bn_batches,
        },
    )?;
    for note in &folder.notes {
        eprintln!("note: {note}");
    }
    let what = if gatekit::serve::source::is_run_folder(&args.source) {
        "run (last commit, masks binarized)"
    } else {
        "export"
    };
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
        watch: args.watch.clone().map(|dir| WatchConfig {
            dir,
            every: Duration::from_millis(args.watch_ms),
        }),
        ..ServeConfig::default()
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
            "serving {} task(s) of model `{}` from {what} {} on http://{local}",
            store.names().len(),
            store.model().name,
            args.source.display()
        );
        serve(listener, store, config, shutdown_signal()).await?;
        eprintln!("stopped");
        Ok(())
    })
}
