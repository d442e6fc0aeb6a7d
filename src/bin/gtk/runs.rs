//! What `gtk train` and its sweeps (and the readers eval, export, adapt) share below the
//! commands: a new run's folder name, the strategies of `--strategy`, `--allow-changed-data`
//! as the library's choice, and ending a seed's process with its sweep. It sits below
//! `train.rs` and `sweep.rs` so neither imports the other's helpers (`train.rs` only hands
//! `--seeds` to `sweep::run`).

use crate::cli::StrategyArg;
use anyhow::{Context, Result, bail};
use gatekit::train::{ChangedData, Strategy, TaskOrder};
use std::path::{Path, PathBuf};

/// `--allow-changed-data` as the library's choice.
pub fn changed_data(allow: bool) -> ChangedData {
    if allow {
        ChangedData::Allow
    } else {
        ChangedData::Refuse
    }
}

/// Ends this process when stdin reaches its end: the sweep that started it holds the other
/// end, so a killed sweep takes its seeds' processes with it (their runs resume later).
pub fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        std::process::exit(3);
    });
}

/// The strategies of `--strategy LIST` for a task set of `schedule`: `all` stands for every
/// strategy of the schedule, so it comes alone; a strategy named twice is refused rather than
/// trained once without a word.
pub fn strategies(list: &[StrategyArg], schedule: TaskOrder) -> Result<Vec<Strategy>> {
    let mut out: Vec<Strategy> = Vec::with_capacity(list.len());
    for s in list {
        let s = match s {
            StrategyArg::All if list.len() == 1 => return Ok(Strategy::all_for(schedule)),
            StrategyArg::All => bail!(
                "--strategy: `all` already stands for every strategy of the schedule; give it alone or list strategies without it"
            ),
            StrategyArg::Gated => Strategy::Gated,
            StrategyArg::Shared => Strategy::Shared,
            StrategyArg::Separate => Strategy::Separate,
            StrategyArg::Finetune => Strategy::Finetune,
            StrategyArg::Joint => Strategy::Joint,
            StrategyArg::Ewc => Strategy::Ewc,
            StrategyArg::OnlineEwc => Strategy::OnlineEwc,
            StrategyArg::Si => Strategy::Si,
            StrategyArg::Xdg => Strategy::Xdg,
        };
        if out.contains(&s) {
            bail!("--strategy lists `{s}` twice");
        }
        out.push(s);
    }
    Ok(out)
}

/// `runs/<name>` or `runs/<task-set>-<UTC time>`.
pub fn run_dir(runs: &Path, name: Option<&str>, task_set: Option<&Path>) -> Result<PathBuf> {
    if let Some(name) = name {
        if let Err(why) = gatekit::task::check_portable_name(name) {
            bail!("--name `{name}` {why}");
        }
        return Ok(runs.join(name));
    }
    let stem = task_set
        .and_then(|p| p.file_stem())
        .and_then(|s| s.to_str())
        .unwrap_or("sinusoid");
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("system clock before 1970")?
        .as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let base = format!(
        "{stem}-{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    let mut dir = runs.join(&base);
    let mut n = 2;
    while dir.exists() {
        dir = runs.join(format!("{base}-{n}"));
        n += 1;
    }
    Ok(dir)
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}
