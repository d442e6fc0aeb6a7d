//! `gtk sweep`: a sweep's members at a glance (`status`), its summary once all are done
//! (`summary`), and one member trained in this process (`run-member`, what each Slurm array
//! element runs). Above `train`, because a member is trained exactly as `gtk train` would.

use crate::cli::{RunMemberArgs, SweepArgs, SweepCommand, SweepDirArgs};
use anyhow::{Result, bail};
use clap::Parser;
use gatekit::sweep::slurm::{self, State};
use gatekit::sweep::{MemberState, Sweep};

pub fn run(args: SweepArgs) -> Result<()> {
    match args.command {
        SweepCommand::Status(a) => status(a),
        SweepCommand::Summary(a) => summary(a),
        SweepCommand::RunMember(a) => run_member(a),
    }
}

/// One line per member, then the counts and what to do next.
fn status(args: SweepDirArgs) -> Result<()> {
    let sweep = Sweep::open(&args.sweep)?;
    let statuses = slurm::member_statuses(&sweep)?;
    let width = statuses.iter().map(|s| s.label.len()).max().unwrap_or(0);
    println!("sweep {}", sweep.dir.display());
    for s in &statuses {
        let steps = match s.total {
            Some(t) => format!("{}/{t}", s.step),
            None => "-".into(),
        };
        let mut line = format!(
            "{:>3}  {:<width$}  {:<11}  {:>11}",
            s.index,
            s.label,
            s.state.word(),
            steps
        );
        if let Some(job) = &s.job {
            line.push_str(&format!("  job {job}"));
        }
        if !s.detail.is_empty() {
            line.push_str(&format!("  {}", s.detail));
        }
        println!("{}", line.trim_end());
    }
    let count = |state: State| statuses.iter().filter(|s| s.state == state).count();
    let counts: Vec<String> = [
        State::Done,
        State::Running,
        State::Pending,
        State::Stopped,
        State::Failed,
        State::NotStarted,
    ]
    .into_iter()
    .filter(|&st| count(st) > 0)
    .map(|st| format!("{} {}", count(st), st.word()))
    .collect();
    println!("{} members: {}", statuses.len(), counts.join(", "));
    let dir = sweep.dir.display();
    if count(State::Done) == statuses.len() {
        println!("all done; the summary: gtk sweep summary {dir}");
    } else if count(State::Failed) + count(State::Stopped) + count(State::NotStarted) > 0 {
        println!(
            "rerun the members not done (each resumes from its last commit): gtk train --resume {dir} --launcher slurm (or --launcher local)"
        );
    }
    Ok(())
}

/// The summary, refused while any member is not done.
fn summary(args: SweepDirArgs) -> Result<()> {
    let sweep = Sweep::open(&args.sweep)?;
    let statuses = slurm::member_statuses(&sweep)?;
    let open = slurm::unfinished(&statuses);
    if !open.is_empty() {
        bail!(
            "{}: {} of {} members not done, no summary written: {}; see gtk sweep status {}",
            sweep.dir.display(),
            open.len(),
            statuses.len(),
            open.join(", "),
            sweep.dir.display()
        );
    }
    let text = crate::sweep::write_summary(&sweep)?;
    println!("{text}");
    println!(
        "summary saved in {} ({}, {})",
        sweep.dir.display(),
        gatekit::sweep::SUMMARY_JSON,
        gatekit::sweep::SUMMARY_MD
    );
    Ok(())
}

/// Trains member `index` in this process, as `gtk train` with the member's arguments (so a
/// SIGTERM stops it at a step boundary with the stopped exit code).
fn run_member(args: RunMemberArgs) -> Result<()> {
    let sweep = Sweep::open(&args.sweep)?;
    let members = sweep.members();
    let Some(member) = members.get(args.index) else {
        bail!(
            "{}: no member {} (the sweep has {}, numbered 0 to {})",
            sweep.dir.display(),
            args.index,
            members.len(),
            members.len().saturating_sub(1)
        );
    };
    let state = sweep.state_of(member)?;
    if let MemberState::Done { total } = state {
        println!(
            "{}: already done ({total} steps) in {}",
            sweep.label(member),
            sweep.dir_of(member).display()
        );
        return Ok(());
    }
    if state == MemberState::New {
        sweep.check_task_set()?;
    }
    let mut argv: Vec<std::ffi::OsString> = vec!["gtk".into()];
    argv.extend(crate::sweep::member_args(
        &sweep,
        member,
        state,
        None,
        args.data.data_dir.as_deref(),
        args.allow_changed_data,
    ));
    let cli = crate::cli::Cli::try_parse_from(argv)?;
    let crate::cli::Command::Train(train) = cli.command else {
        bail!("internal: a member's arguments are not a `gtk train` command");
    };
    println!(
        "{}: {} in {}",
        sweep.label(member),
        match state {
            MemberState::Partial { step, total } => format!("resuming at step {step}/{total}"),
            _ => "starting".into(),
        },
        sweep.dir_of(member).display()
    );
    crate::train::run(train)
}
