//! `gtk data fetch|verify`: the dataset work is `gatekit::data`'s; this shows its progress.

use crate::cli::{DataArgs, DataCommand, DatasetArg, FetchArgs, VerifyArgs};
use anyhow::Result;
use gatekit::data::{FetchEvent, fetch_mnist, mnist_dir, resolve_data_dir, verify_mnist};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

pub fn run(args: DataArgs) -> Result<()> {
    match args.command {
        DataCommand::Fetch(args) => fetch(args),
        DataCommand::Verify(args) => verify(args),
    }
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
