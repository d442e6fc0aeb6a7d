//! `gtk tasks [KIND]`.

use crate::cli::TasksArgs;
use anyhow::Result;
use gatekit::task::{find_kind, kinds};

pub fn run(args: TasksArgs) -> Result<()> {
    match args.kind {
        None => {
            let all = kinds();
            let width = all.iter().map(|k| k.name.len()).max().unwrap_or(0);
            for k in all {
                println!("{:<width$}  {}", k.name, k.summary);
                let params: Vec<String> = k
                    .params
                    .iter()
                    .map(|p| format!("{}={}", p.name, p.default.unwrap_or("(required)")))
                    .collect();
                println!("{:<width$}  parameters: {}", "", params.join(", "));
            }
        }
        Some(name) => {
            let k = find_kind("(command line)", &name)?;
            println!("{}\n  {}\n\nparameters:", k.name, k.summary);
            for p in k.params {
                println!(
                    "  {:<10} {:<16} default {:<14} {}",
                    p.name,
                    p.ty.as_str(),
                    p.default.unwrap_or("(required)"),
                    p.help
                );
            }
        }
    }
    Ok(())
}
