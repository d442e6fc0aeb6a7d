//! `gtk train --seeds`: a sweep folder with one `gtk train` process per seed, up to `--jobs`
//! at a time, each a normal run folder; then the summary over seeds.
//!
//! Seeds run as separate processes (not threads) so that each is exactly the run `gtk train
//! --seed S` would make alone, with its own thread pool, lock and crash safety; the sweep
//! only starts, watches and resumes them.

use crate::cli::{LauncherArg, StrategyArg, TrainArgs};
use anyhow::{Context, Result, bail};
use gatekit::config::Setting;
use gatekit::sweep::{
    GridSummary, Member, MemberState, SUMMARY_JSON, SUMMARY_MD, Summary, Sweep, SweepSpec,
};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::ffi::OsString;
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
            StrategyArg::Xdg => "xdg",
            StrategyArg::All => "all",
        })
        .collect();
    names.join(",")
}

/// `--set` of a single run (or of one member's process): one value per key.
pub fn single_settings(args: &TrainArgs) -> Result<Vec<Setting>> {
    if args.set.is_empty() {
        return Ok(Vec::new());
    }
    let base = gatekit::TaskSet::load_with(args.task_set.as_deref(), &[])?;
    let axes = gatekit::sweep::grid_axes(&args.set, &base)?;
    let mut out = Vec::new();
    for a in axes {
        match a.values.as_slice() {
            [value] => out.push(Setting {
                key: a.key,
                value: value.clone(),
            }),
            more => bail!(
                "command line: `--set` gives {} {} values: several values make a grid, which needs --seeds (e.g. --seeds 0..3)",
                a.key,
                more.len()
            ),
        }
    }
    Ok(out)
}

/// A new sweep (`--seeds`) or a resumed one (`--resume SWEEP`).
pub fn run(args: TrainArgs) -> Result<()> {
    if args.lr.is_some() || args.mask_lr.is_some() {
        bail!(
            "--lr and --mask-lr apply to one run, not to a sweep: give --set lr=V (or --set mask_lr=V; several values make a grid), set them in the task set's [run] table, or resume one seed's run folder (SWEEP/seed-N) with them"
        );
    }
    if args.jobs == Some(0) {
        bail!("--jobs must be at least 1, got 0");
    }
    if args.threads_per_run == Some(0) {
        bail!("--threads-per-run must be at least 1, got 0");
    }
    let slurm = args.launcher == LauncherArg::Slurm;
    if slurm {
        // Before the sweep folder exists: a machine without Slurm leaves nothing behind.
        crate::launch::check_slurm(&args)?;
    } else {
        crate::launch::refuse_slurm_flags(&args)?;
    }
    let sweep = open_or_create(&args)?;
    if slurm {
        return crate::launch::submit_sweep(&sweep, &args);
    }
    let _lock = sweep.lock()?;
    let threads = sweep.spec.threads_per_run;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = args.jobs.unwrap_or((cores / threads).max(1));
    let members = sweep.members();
    let mut todo = Vec::new();
    let (mut done, mut partial, mut new) = (0, 0, 0);
    for m in &members {
        let state = sweep.state_of(m)?;
        match state {
            MemberState::Done { .. } => done += 1,
            MemberState::Partial { .. } => partial += 1,
            MemberState::New => new += 1,
        }
        if !matches!(state, MemberState::Done { .. }) {
            todo.push((*m, state));
        }
    }
    if new > 0 {
        sweep.check_task_set()?;
    }
    if !args.quiet.quiet {
        let configs = sweep.configurations().len();
        println!(
            "sweep {}: {}{} seed{} ({done} done, {partial} to resume, {new} to start), {} at a time, {threads} thread{} each",
            sweep.dir.display(),
            if configs > 1 {
                format!("{configs} configurations × ")
            } else {
                String::new()
            },
            sweep.spec.seeds.len(),
            if sweep.spec.seeds.len() == 1 { "" } else { "s" },
            jobs.min(todo.len().max(1)),
            if threads == 1 { "" } else { "s" }
        );
    }
    run_members(&sweep, &args, todo, jobs)?;
    if args.stop_at.is_some() {
        let open = members
            .iter()
            .map(|m| sweep.state_of(m))
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
    let text = write_summary(&sweep)?;
    println!("\n{text}");
    println!(
        "sweep saved in {} ({SUMMARY_JSON}, {SUMMARY_MD}; one run folder per {})",
        sweep.dir.display(),
        if sweep.is_grid() {
            "configuration and seed"
        } else {
            "seed"
        }
    );
    Ok(())
}

/// Writes the sweep's `summary.json` and `summary.md` (every member must be done); the
/// summary as text for the terminal.
pub fn write_summary(sweep: &Sweep) -> Result<String> {
    let (json, markdown, text) = if sweep.is_grid() {
        let summary = GridSummary::of_sweep(sweep)?;
        (summary.to_json()?, summary.markdown(), summary.text())
    } else {
        let summary = Summary::of_sweep(sweep)?;
        (summary.to_json()?, summary.markdown(), summary.text())
    };
    gatekit::run_folder::fsio::write_atomic(&sweep.dir.join(SUMMARY_JSON), json.as_bytes())?;
    gatekit::run_folder::fsio::write_atomic(&sweep.dir.join(SUMMARY_MD), markdown.as_bytes())?;
    Ok(text)
}

/// The sweep `args` name: an existing one to resume, or a new one whose every configuration
/// the task set accepts (checked before its folder exists).
fn open_or_create(args: &TrainArgs) -> Result<Sweep> {
    Ok(match (&args.resume, &args.seeds) {
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
            let set = gatekit::TaskSet::load_with(args.task_set.as_deref(), &[])?;
            let grid = gatekit::sweep::grid_axes(&args.set, &set)?;
            // Every configuration is loaded (not trained) now, so a value the task set
            // refuses stops the sweep before its folder exists.
            for c in gatekit::sweep::grid_configurations(&grid)? {
                let set = gatekit::TaskSet::load_with(args.task_set.as_deref(), &c.settings)?;
                crate::runs::strategies(&args.strategy, set.run.schedule.order)?;
                if let Some(steps) = args.steps {
                    set.clone().set_steps(steps)?;
                }
            }
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
            Sweep::create(&dir, SweepSpec { grid, ..spec })?
        }
        (None, None) => bail!("give --seeds or --resume SWEEP"),
    })
}

/// What a seed's process reports to the sweep.
enum Msg {
    Out(usize, String),
    Err(usize, String),
    /// One of the process's two output streams ended.
    Closed(usize),
}

/// A member's process; `id` numbers the members started by this sweep process.
struct Running {
    id: usize,
    /// `seed 3`, or `lr=0.1/seed 3` in a grid.
    label: String,
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
    todo: Vec<(Member, MemberState)>,
    jobs: usize,
) -> Result<()> {
    let mut members = Members::new(sweep, args)?;
    let mut queue = todo.into_iter();
    loop {
        while members.running.len() < jobs {
            let Some((member, state)) = queue.next() else {
                break;
            };
            members.start(member, state)?;
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
    /// Members started so far (the next one's id).
    started: usize,
    failed: Vec<(String, String)>,
}

impl<'a> Members<'a> {
    fn new(sweep: &'a Sweep, args: &'a TrainArgs) -> Result<Self> {
        let exe = std::env::current_exe().context("cannot find the gtk executable")?;
        let multi = (!args.quiet.quiet && std::io::stdout().is_terminal()).then(MultiProgress::new);
        let style =
            ProgressStyle::with_template("{prefix:>8} {bar:30} {pos}/{len} steps  eta {eta}")
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
            started: 0,
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

    /// Starts a member's process, with one thread per output stream forwarding its lines.
    fn start(&mut self, member: Member, state: MemberState) -> Result<()> {
        let id = self.started;
        self.started += 1;
        let label = self.sweep.label(&member);
        let mut child = member_command(&self.exe, self.sweep, self.args, &member, state)
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
                        Msg::Err(id, line)
                    } else {
                        Msg::Out(id, line)
                    };
                    if tx.send(msg).is_err() {
                        return;
                    }
                }
                let _ = tx.send(Msg::Closed(id));
            });
        }
        let bar = self.multi.as_ref().map(|m| {
            let total = match state {
                MemberState::Partial { total, .. } | MemberState::Done { total } => total,
                MemberState::New => 0,
            };
            let b = m.add(ProgressBar::new(total as u64));
            b.set_style(self.style.clone());
            b.set_prefix(label.clone());
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
                "{label}: {what} in {}",
                self.sweep.dir_of(&member).display()
            ));
        }
        self.running.push(Running {
            id,
            label,
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
            Msg::Out(id, line) => {
                let Some(r) = self.running.iter().find(|r| r.id == id) else {
                    return;
                };
                if let Some(rest) = line.strip_prefix("@step ") {
                    if let (Some(bar), Some((pos, len))) = (&r.bar, rest.split_once('/')) {
                        bar.set_length(len.parse().unwrap_or(0));
                        bar.set_position(pos.parse().unwrap_or(0));
                    }
                } else if !quiet && line.starts_with("step ") {
                    self.say(format!("{}: {line}", r.label));
                }
            }
            Msg::Err(id, line) => {
                let Some(r) = self.running.iter().find(|r| r.id == id) else {
                    return;
                };
                if line.trim().is_empty() {
                    return;
                }
                if line.starts_with("note: ") && !quiet {
                    self.say(format!("{}: {line}", r.label));
                }
                if let Some(r) = self.running.iter_mut().find(|r| r.id == id) {
                    r.errors.push(line);
                }
            }
            Msg::Closed(id) => {
                if let Some(r) = self.running.iter_mut().find(|r| r.id == id) {
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
                    self.say(format!("{}: done", r.label));
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
                self.say(format!("{}: failed: {why}", r.label));
                self.failed.push((r.label, why));
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
            .map(|(s, why)| format!("{s} ({})", why.trim_start_matches("error: ")))
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

/// The `gtk train` arguments of one member: a new run `seed-N` in its configuration's folder
/// (with the configuration's `--set` values), or a resume; what a local sweep's process and a
/// Slurm array element (`gtk sweep run-member`) both run.
pub fn member_args(
    sweep: &Sweep,
    member: &Member,
    state: MemberState,
    stop_at: Option<usize>,
    data_dir: Option<&Path>,
    allow_changed_data: bool,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["train".into()];
    let dir = sweep.dir_of(member);
    match state {
        MemberState::New => {
            let spec = &sweep.spec;
            let parent = dir.parent().unwrap_or(&sweep.dir);
            a.extend(["--seed".into(), member.seed.to_string().into()]);
            a.extend([
                "--name".into(),
                gatekit::sweep::member_name(member.seed).into(),
            ]);
            a.extend(["--runs-dir".into(), parent.into()]);
            a.extend(["--strategy".into(), spec.strategy.clone().into()]);
            if let Some(p) = &spec.task_set {
                a.extend(["--task-set".into(), p.into()]);
            }
            if let Some(n) = spec.steps {
                a.extend(["--steps".into(), n.to_string().into()]);
            }
            if let Some(c) = sweep.configurations().get(member.config) {
                for s in &c.settings {
                    a.extend(["--set".into(), s.arg().into()]);
                }
            }
        }
        _ => {
            a.extend(["--resume".into(), dir.into()]);
            if allow_changed_data {
                a.push("--allow-changed-data".into());
            }
        }
    }
    if let Some(stop) = stop_at {
        a.extend(["--stop-at".into(), stop.to_string().into()]);
    }
    if let Some(d) = data_dir {
        a.extend(["--data-dir".into(), d.into()]);
    }
    a
}

/// The `gtk train` process of one member of a local sweep.
fn member_command(
    exe: &Path,
    sweep: &Sweep,
    args: &TrainArgs,
    member: &Member,
    state: MemberState,
) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args(member_args(
        sweep,
        member,
        state,
        args.stop_at,
        args.data.data_dir.as_deref(),
        args.allow_changed_data,
    ));
    cmd.args(["--progress-lines", "--exit-with-parent"])
        .env("RAYON_NUM_THREADS", sweep.spec.threads_per_run.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}
