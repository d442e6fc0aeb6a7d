//! `gtk train --seeds`: a sweep folder with one `gtk train` process per seed, up to `--jobs`
//! at a time, each a normal run folder; then the summary over seeds.
//!
//! Seeds run as separate processes (not threads) so that each is exactly the run `gtk train
//! --seed S` would make alone, with its own thread pool, lock and crash safety; the sweep
//! only starts, watches and resumes them.

use crate::cli::{StrategyArg, TrainArgs};
use anyhow::{Context, Result, bail};
use gatekit::sweep::{MemberState, SUMMARY_JSON, SUMMARY_MD, Summary, Sweep, SweepSpec};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

/// `--strategy` as the seeds' processes are given it (`all`, or a comma list).
fn strategy_list(list: &[StrategyArg]) -> String {
    let names: Vec<&str> = list
        .iter()
        .map(|s| match s {
            StrategyArg::Gated => "gated",
            StrategyArg::Shared => "shared",
            StrategyArg::Separate => "separate",
            StrategyArg::Finetune => "finetune",
            StrategyArg::Joint => "joint",
            StrategyArg::Ewc => "ewc",
            StrategyArg::OnlineEwc => "online-ewc",
            StrategyArg::Si => "si",
            StrategyArg::All => "all",
        })
        .collect();
    names.join(",")
}

/// A new sweep (`--seeds`) or a resumed one (`--resume SWEEP`).
pub fn run(args: TrainArgs) -> Result<()> {
    if args.lr.is_some() || args.mask_lr.is_some() {
        bail!(
            "--lr and --mask-lr apply to one run, not to a sweep: set `lr` / `mask_lr` in the task set's [run] table for a new sweep, or resume one seed's run folder (SWEEP/seed-N) with them"
        );
    }
    if args.jobs == Some(0) {
        bail!("--jobs must be at least 1, got 0");
    }
    if args.threads_per_run == Some(0) {
        bail!("--threads-per-run must be at least 1, got 0");
    }
    let sweep = match (&args.resume, &args.seeds) {
        (Some(dir), _) => {
            let sweep = Sweep::open(dir)?;
            if let Some(t) = args.threads_per_run
                && t != sweep.spec.threads_per_run
            {
                bail!(
                    "{}: the sweep trains with {} thread(s) per run and results can depend on the thread count; resume it without --threads-per-run",
                    dir.display(),
                    sweep.spec.threads_per_run
                );
            }
            sweep
        }
        (None, Some(text)) => {
            let seeds = gatekit::sweep::parse_seeds(text)?;
            if args.steps == Some(0) {
                bail!("--steps must be a positive integer, got 0");
            }
            // Everything a seed's process would refuse is checked once here, before the
            // sweep folder exists.
            let set = match &args.task_set {
                Some(p) => gatekit::TaskSet::load(p)?,
                None => gatekit::TaskSet::builtin()?,
            };
            crate::runs::strategies(&args.strategy, set.run.schedule.order)?;
            let dir = crate::runs::run_dir(
                &args.runs_dir.runs_dir,
                args.name.as_deref(),
                args.task_set.as_deref(),
            )?;
            let spec = SweepSpec::new(
                seeds,
                &strategy_list(&args.strategy),
                args.task_set.as_deref(),
                args.steps,
                args.threads_per_run.unwrap_or(1),
            )?;
            Sweep::create(&dir, spec)?
        }
        (None, None) => bail!("give --seeds or --resume SWEEP"),
    };
    let _lock = sweep.lock()?;
    let threads = sweep.spec.threads_per_run;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = args.jobs.unwrap_or((cores / threads).max(1));
    let mut todo = Vec::new();
    let (mut done, mut partial, mut new) = (0, 0, 0);
    for &seed in &sweep.spec.seeds {
        let state = sweep.member_state(seed)?;
        match state {
            MemberState::Done { .. } => done += 1,
            MemberState::Partial { .. } => partial += 1,
            MemberState::New => new += 1,
        }
        if !matches!(state, MemberState::Done { .. }) {
            todo.push((seed, state));
        }
    }
    if new > 0 {
        sweep.check_task_set()?;
    }
    if !args.quiet.quiet {
        println!(
            "sweep {}: {} seed{} ({done} done, {partial} to resume, {new} to start), {} at a time, {threads} thread{} each",
            sweep.dir.display(),
            sweep.spec.seeds.len(),
            if sweep.spec.seeds.len() == 1 { "" } else { "s" },
            jobs.min(todo.len().max(1)),
            if threads == 1 { "" } else { "s" }
        );
    }
    run_members(&sweep, &args, todo, jobs)?;
    if args.stop_at.is_some() {
        let open = sweep
            .spec
            .seeds
            .iter()
            .map(|s| sweep.member_state(*s))
            .collect::<gatekit::Result<Vec<_>>>()?;
        if open.iter().any(|s| !matches!(s, MemberState::Done { .. })) {
            println!(
                "sweep stopped at step {}; continue with: gtk train --resume {}",
                args.stop_at.unwrap_or(0),
                sweep.dir.display()
            );
            return Ok(());
        }
    }
    let summary = Summary::of_sweep(&sweep)?;
    gatekit::run_folder::fsio::write_atomic(
        &sweep.dir.join(SUMMARY_JSON),
        summary.to_json()?.as_bytes(),
    )?;
    gatekit::run_folder::fsio::write_atomic(
        &sweep.dir.join(SUMMARY_MD),
        summary.markdown().as_bytes(),
    )?;
    println!("\n{}", summary.text());
    println!(
        "sweep saved in {} ({SUMMARY_JSON}, {SUMMARY_MD}; one run folder per seed)",
        sweep.dir.display()
    );
    Ok(())
}

/// What a seed's process reports to the sweep.
enum Msg {
    Out(u64, String),
    Err(u64, String),
    /// One of the process's two output streams ended.
    Closed(u64),
}

struct Running {
    seed: u64,
    child: Child,
    bar: Option<ProgressBar>,
    errors: Vec<String>,
    /// Output streams still open (the process's last lines arrive after it exits).
    open_streams: usize,
    status: Option<std::process::ExitStatus>,
}

/// Starts the seeds' processes, at most `jobs` at a time, until every seed is done or failed.
fn run_members(
    sweep: &Sweep,
    args: &TrainArgs,
    todo: Vec<(u64, MemberState)>,
    jobs: usize,
) -> Result<()> {
    let mut members = Members::new(sweep, args)?;
    let mut queue = todo.into_iter();
    loop {
        while members.running.len() < jobs {
            let Some((seed, state)) = queue.next() else {
                break;
            };
            members.start(seed, state)?;
        }
        if members.running.is_empty() {
            break;
        }
        while let Ok(msg) = members
            .rx
            .recv_timeout(std::time::Duration::from_millis(100))
        {
            members.on_message(msg);
        }
        members.reap()?;
    }
    members.report_failures()
}

/// The seeds' processes of one sweep run: those running, the failed ones, and where their
/// output goes.
struct Members<'a> {
    sweep: &'a Sweep,
    args: &'a TrainArgs,
    exe: std::path::PathBuf,
    /// Progress bars on a terminal (none with --quiet or into a pipe).
    multi: Option<MultiProgress>,
    style: ProgressStyle,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
    running: Vec<Running>,
    failed: Vec<(u64, String)>,
}

impl<'a> Members<'a> {
    fn new(sweep: &'a Sweep, args: &'a TrainArgs) -> Result<Self> {
        let exe = std::env::current_exe().context("cannot find the gtk executable")?;
        let multi = (!args.quiet.quiet && std::io::stdout().is_terminal()).then(MultiProgress::new);
        let style =
            ProgressStyle::with_template("seed {prefix:>4} {bar:30} {pos}/{len} steps  eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        let (tx, rx) = mpsc::channel::<Msg>();
        Ok(Members {
            sweep,
            args,
            exe,
            multi,
            style,
            tx,
            rx,
            running: Vec::new(),
            failed: Vec::new(),
        })
    }

    /// A line above the progress bars (or on stdout without them).
    fn say(&self, line: String) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => println!("{line}"),
        }
    }

    /// Starts seed `seed`'s process, with one thread per output stream forwarding its lines.
    fn start(&mut self, seed: u64, state: MemberState) -> Result<()> {
        let mut child = member_command(&self.exe, self.sweep, self.args, seed, state)
            .spawn()
            .with_context(|| format!("cannot start {}", self.exe.display()))?;
        let streams: [(Option<Box<dyn std::io::Read + Send>>, bool); 2] = [
            (child.stdout.take().map(|s| Box::new(s) as _), false),
            (child.stderr.take().map(|s| Box::new(s) as _), true),
        ];
        for (stream, is_err) in streams {
            let Some(stream) = stream else { continue };
            let tx = self.tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(|l| l.ok()) {
                    let msg = if is_err {
                        Msg::Err(seed, line)
                    } else {
                        Msg::Out(seed, line)
                    };
                    if tx.send(msg).is_err() {
                        return;
                    }
                }
                let _ = tx.send(Msg::Closed(seed));
            });
        }
        let bar = self.multi.as_ref().map(|m| {
            let total = match state {
                MemberState::Partial { total, .. } | MemberState::Done { total } => total,
                MemberState::New => 0,
            };
            let b = m.add(ProgressBar::new(total as u64));
            b.set_style(self.style.clone());
            b.set_prefix(seed.to_string());
            b
        });
        if !self.args.quiet.quiet {
            let what = match state {
                MemberState::Partial { step, total } => {
                    format!("resuming at step {step}/{total}")
                }
                _ => "starting".into(),
            };
            self.say(format!(
                "seed {seed}: {what} in {}",
                self.sweep.member_dir(seed).display()
            ));
        }
        self.running.push(Running {
            seed,
            child,
            bar,
            errors: Vec::new(),
            open_streams: 2,
            status: None,
        });
        Ok(())
    }

    /// One line from a seed's process: progress to its bar, step lines and notes to the
    /// screen, stderr kept for the failure message.
    fn on_message(&mut self, msg: Msg) {
        let quiet = self.args.quiet.quiet;
        match msg {
            Msg::Out(seed, line) => {
                let Some(r) = self.running.iter().find(|r| r.seed == seed) else {
                    return;
                };
                if let Some(rest) = line.strip_prefix("@step ") {
                    if let (Some(bar), Some((pos, len))) = (&r.bar, rest.split_once('/')) {
                        bar.set_length(len.parse().unwrap_or(0));
                        bar.set_position(pos.parse().unwrap_or(0));
                    }
                } else if !quiet && line.starts_with("step ") {
                    self.say(format!("seed {seed}: {line}"));
                }
            }
            Msg::Err(seed, line) => {
                if line.trim().is_empty() || !self.running.iter().any(|r| r.seed == seed) {
                    return;
                }
                if line.starts_with("note: ") && !quiet {
                    self.say(format!("seed {seed}: {line}"));
                }
                if let Some(r) = self.running.iter_mut().find(|r| r.seed == seed) {
                    r.errors.push(line);
                }
            }
            Msg::Closed(seed) => {
                if let Some(r) = self.running.iter_mut().find(|r| r.seed == seed) {
                    r.open_streams = r.open_streams.saturating_sub(1);
                }
            }
        }
    }

    /// Removes the processes that have exited and closed both streams, saying how each ended.
    fn reap(&mut self) -> Result<()> {
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].status.is_none() {
                self.running[i].status = self.running[i].child.try_wait()?;
            }
            let r = &self.running[i];
            let Some(status) = r.status.filter(|_| r.open_streams == 0) else {
                i += 1;
                continue;
            };
            let r = self.running.swap_remove(i);
            if let Some(bar) = &r.bar {
                bar.finish_and_clear();
            }
            if status.success() {
                if !self.args.quiet.quiet {
                    self.say(format!("seed {}: done", r.seed));
                }
            } else {
                let why = r
                    .errors
                    .iter()
                    .rev()
                    .find(|l| l.starts_with("error: "))
                    .or(r.errors.last())
                    .cloned()
                    .unwrap_or_else(|| format!("exited with {status}"));
                self.say(format!("seed {}: failed: {why}", r.seed));
                self.failed.push((r.seed, why));
            }
        }
        Ok(())
    }

    /// The error naming every failed seed, if any.
    fn report_failures(self) -> Result<()> {
        if self.failed.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = self
            .failed
            .iter()
            .map(|(s, why)| format!("seed {s} ({})", why.trim_start_matches("error: ")))
            .collect();
        bail!(
            "{} of the sweep failed: {}; finished seeds are kept, continue with `gtk train --resume {}`",
            if self.failed.len() == 1 {
                "one seed"
            } else {
                "seeds"
            },
            list.join("; "),
            self.sweep.dir.display()
        );
    }
}

/// The `gtk train` command of one seed: a new run `seed-N` in the sweep folder, or a resume.
fn member_command(
    exe: &Path,
    sweep: &Sweep,
    args: &TrainArgs,
    seed: u64,
    state: MemberState,
) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg("train");
    match state {
        MemberState::New => {
            let spec = &sweep.spec;
            cmd.args(["--seed", &seed.to_string()])
                .args(["--name", &gatekit::sweep::member_name(seed)])
                .arg("--runs-dir")
                .arg(&sweep.dir)
                .args(["--strategy", &spec.strategy]);
            if let Some(p) = &spec.task_set {
                cmd.arg("--task-set").arg(p);
            }
            if let Some(n) = spec.steps {
                cmd.args(["--steps", &n.to_string()]);
            }
        }
        _ => {
            cmd.arg("--resume").arg(sweep.member_dir(seed));
            if args.allow_changed_data {
                cmd.arg("--allow-changed-data");
            }
        }
    }
    if let Some(stop) = args.stop_at {
        cmd.args(["--stop-at", &stop.to_string()]);
    }
    if let Some(d) = &args.data.data_dir {
        cmd.arg("--data-dir").arg(d);
    }
    cmd.args(["--progress-lines", "--exit-with-parent"])
        .env("RAYON_NUM_THREADS", sweep.spec.threads_per_run.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}
