//! `gtk data fetch|verify|dump`: the dataset work is `gatekit::data`'s (the dump's is
//! `gatekit::train::dump_examples`); this shows its progress and results.

use crate::cli::{DataArgs, DataCommand, DatasetArg, DumpArgs, FetchArgs, SplitArg, VerifyArgs};
use anyhow::Result;
use gatekit::data::{FetchEvent, fetch_mnist, mnist_dir, resolve_data_dir, verify_mnist};
use gatekit::task::{Objective, Split};
use gatekit::train::{DumpSpec, dump_examples};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

pub fn run(args: DataArgs) -> Result<()> {
    match args.command {
        DataCommand::Fetch(args) => fetch(args),
        DataCommand::Verify(args) => verify(args),
        DataCommand::Dump(args) => dump(args),
    }
}

fn dump(args: DumpArgs) -> Result<()> {
    let spec = DumpSpec {
        task: args.task.as_deref(),
        split: match args.split {
            SplitArg::Train => Split::Train,
            SplitArg::Test => Split::Test,
        },
        examples: args.examples,
        out: &args.out,
        data_dir: args.data.data_dir.as_deref(),
    };
    let d = dump_examples(&args.source, &spec)?;
    let files: Vec<String> = d.files.iter().map(|f| f.display().to_string()).collect();
    println!(
        "task {}: {} {} examples of shape {:?} ({}) -> {}",
        d.task,
        d.examples,
        spec.split.as_str(),
        d.input_shape,
        match d.objective {
            Objective::Classification => "int64 labels",
            Objective::Regression => "float32 targets",
        },
        files.join(", ")
    );
    Ok(())
}

fn fetch(args: FetchArgs) -> Result<()> {
    let DatasetArg::Mnist = args.dataset;
    let data_dir = resolve_data_dir(args.data.data_dir.as_deref());
    let dir = mnist_dir(&data_dir);
    println!("fetching MNIST into {}", dir.display());
    // The bar draws on stderr, so that is the stream that must be a terminal.
    let terminal = std::io::stderr().is_terminal();
    let mut bar: Option<ProgressBar> = None;
    let mut on = |event: FetchEvent<'_>| match event {
        FetchEvent::Present { file, path } => {
            println!("{file}: already present and intact ({})", path.display());
        }
        FetchEvent::Start { file, total, .. } if terminal => {
            bar = Some(download_bar(file, total));
        }
        FetchEvent::Progress { received } => {
            if let Some(bar) = &bar {
                bar.set_position(received);
            }
        }
        FetchEvent::MirrorFailed { url, message, .. } => {
            if let Some(bar) = bar.take() {
                bar.finish_and_clear();
            }
            eprintln!("note: skipping {url}: {message}");
        }
        FetchEvent::Installed {
            file,
            path,
            url,
            bytes,
        } => {
            if let Some(bar) = bar.take() {
                bar.finish_and_clear();
            }
            println!(
                "{file}: {bytes} bytes from {url}, sha256 ok, installed as {}",
                path.display()
            );
        }
        FetchEvent::Removed { path } => {
            println!(
                "removed {} (superseded by the verified file)",
                path.display()
            );
        }
        _ => {}
    };
    let result = fetch_mnist(&data_dir, &args.mirrors, &mut on);
    if let Some(bar) = bar.take() {
        bar.finish_and_clear();
    }
    result?;
    println!("MNIST is ready in {}", dir.display());
    Ok(())
}

fn download_bar(file: &str, total: Option<u64>) -> ProgressBar {
    let bar = match total {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::no_length(),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:24} {bar:30} {bytes}/{total_bytes}  {bytes_per_sec}  eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(file.to_string());
    bar
}

fn verify(args: VerifyArgs) -> Result<()> {
    let DatasetArg::Mnist = args.dataset;
    let data_dir = resolve_data_dir(args.data.data_dir.as_deref());
    for f in verify_mnist(&data_dir)? {
        println!(
            "ok  {:<24} {:>6} records  sha256 {}  {}",
            f.name,
            f.records,
            f.sha256,
            f.path.display()
        );
    }
    println!(
        "MNIST in {} is complete and intact",
        mnist_dir(&data_dir).display()
    );
    Ok(())
}
