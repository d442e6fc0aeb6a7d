//! `gtk train --launcher slurm` on a real one-node Slurm cluster (started by
//! tests/slurm/start.sh, stopped by tests/slurm/stop.sh however the test ends): a grid sweep
//! submitted as an array job, one element preempted with SIGTERM (it commits, is requeued and
//! resumes), `gtk sweep status` and `gtk sweep summary`, and the summary byte-identical to the
//! same sweep run with `--launcher local`. Bad input: no sbatch on PATH, a rejected submission,
//! a member killed with SIGKILL (reported failed, rerun from its commit), a sweep under /tmp
//! (warned). Skipped, with a note, only where Slurm's daemons are not installed (CI installs
//! Debian's slurm-wlm and munge).

mod common;

use common::{assert_clean_error, repo, text};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Steps of each grid member: a few seconds of training (about 10,000 steps/s on one core),
/// so an element is caught running.
const STEPS: &str = "40000";
/// Steps of the member killed with SIGKILL.
const KILL_STEPS: usize = 60000;

/// A one-node cluster, stopped when dropped.
struct Cluster {
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts one, or `None` (with a note) where slurmctld is not installed.
    fn start() -> Option<Cluster> {
        let installed = ["slurmctld", "slurmd", "munged", "sbatch"]
            .iter()
            .all(|t| gatekit::sweep::slurm::find_on_path(t).is_some());
        if !installed {
            eprintln!(
                "note: Slurm is not installed (apt-get install slurm-wlm munge); skipping the cluster test"
            );
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("gtk-slurm")
            .tempdir()
            .expect("temp dir");
        let cluster = Cluster { dir };
        let out = Command::new("bash")
            .arg(repo("tests/slurm/start.sh"))
            .arg(cluster.dir.path().join("c"))
            .output()
            .expect("start.sh runs");
        assert!(out.status.success(), "start.sh failed: {:?}", text(&out));
        Some(cluster)
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("c/slurm.conf")
    }

    /// A Slurm command against this cluster, whatever its exit status.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new(program)
            .args(args)
            .env("SLURM_CONF", self.conf())
            .output()
            .expect("slurm command runs")
    }

    /// What the controller knows of every job and what it logged last, for failure messages.
    fn queue(&self) -> String {
        let jobs = self.run("scontrol", &["show", "job"]);
        let log = std::fs::read_to_string(self.dir.path().join("c/log/slurmctld.log"))
            .unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "== scontrol show job\n{}\n== slurmctld.log (last 60 lines)\n{}",
            String::from_utf8_lossy(&jobs.stdout),
            lines[lines.len().saturating_sub(60)..].join("\n")
        )
    }

    /// `gtk ARGS` in `cwd` against this cluster.
    fn gtk(&self, cwd: &Path, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_gtk"))
            .args(args)
            .current_dir(cwd)
            .env("SLURM_CONF", self.conf())
            .env("RAYON_NUM_THREADS", "1")
            .env_remove("GATEKIT_DATA")
            .output()
            .expect("gtk runs")
    }

    fn gtk_ok(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self.gtk(cwd, args);
        let (stdout, stderr) = text(&out);
        assert!(
            out.status.success(),
            "gtk {args:?} failed:\n{stdout}\n{stderr}"
        );
        stdout
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo("tests/slurm/stop.sh"))
            .arg(self.dir.path().join("c"))
            .output();
    }
}

/// Polls `what` every 200 ms until it is true, or fails after `limit`, showing `context()`.
fn wait_for(
    limit: Duration,
    what: &str,
    mut done: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}:\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn committed_step(run: &Path) -> usize {
    std::fs::read_to_string(run.join("state.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["step"].as_u64())
        .unwrap_or(0) as usize
}

/// The pid in a run folder's `writer.lock` while a trainer holds it.
fn trainer_pid(run: &Path) -> Option<u32> {
    let holder = gatekit::run_folder::WriterLock::holder(run)?;
    holder
        .strip_prefix("process ")?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

fn job_id(submit_output: &str) -> String {
    submit_output
        .split("Slurm array job ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no job id in: {submit_output}"))
        .to_string()
}

/// The sweep's every log, for failure messages.
fn logs(sweep: &Path) -> String {
    let mut out = String::new();
    if let Ok(d) = std::fs::read_dir(sweep.join("slurm/logs")) {
        for e in d.flatten() {
            out.push_str(&format!("== {}\n", e.path().display()));
            out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    out
}

#[test]
fn no_sbatch_on_path_is_one_line_and_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_gtk"))
        .args(["train", "--seeds", "0..2", "--steps", "10", "--name", "s"])
        .args(["--launcher", "slurm", "--quiet"])
        .current_dir(tmp.path())
        .env("PATH", tmp.path().join("no-bin"))
        .output()
        .expect("gtk runs");
    assert_clean_error(&out, &["`sbatch` is not on PATH", "--launcher local"]);
    assert!(!tmp.path().join("runs").exists(), "a sweep folder was made");
    // The Slurm flags without the launcher are refused, not ignored.
    let out = common::gtk(
        tmp.path(),
        &[
            "train",
            "--seeds",
            "0..2",
            "--steps",
            "10",
            "--partition",
            "gpu",
        ],
    );
    assert_clean_error(&out, &["are for --launcher slurm"]);
    assert!(!tmp.path().join("runs").exists(), "a sweep folder was made");
}

#[test]
fn slurm_sweep_is_preempted_resumed_and_matches_local() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let started = Instant::now();
    // The sweeps live under the target folder (a normal disk), not /tmp, so no warning.
    let work = tempfile::Builder::new()
        .prefix("slurm-sweep")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir");
    let w = work.path();
    let grid = [
        "train",
        "--seeds",
        "0..3",
        "--set",
        "lr=0.003,0.01",
        "--steps",
        STEPS,
        "--strategy",
        "gated,shared",
        "--name",
        "grid",
        "--quiet",
    ];
    let mut args = grid.to_vec();
    args.extend([
        "--runs-dir",
        "slurm-runs",
        "--launcher",
        "slurm",
        "--time",
        "10",
    ]);
    let out = cluster.gtk(w, &args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // No warning but the shared-path one, which fires when the checkout itself is under
    // /tmp (CI clones into a temporary folder); killed_member_is_failed_and_rerun checks that
    // one on purpose.
    let other_warnings = stderr
        .lines()
        .filter(|l| {
            l.contains("warning") && !l.contains("may not be visible to the cluster's nodes")
        })
        .count();
    assert_eq!(other_warnings, 0, "{stderr}");
    assert!(stdout.contains("6 members submitted"), "{stdout}");
    assert!(stdout.contains("--array=0-5"), "{stdout}");
    let job = job_id(&stdout);
    let sweep = w.join("slurm-runs/grid");
    let script = std::fs::read_to_string(sweep.join("slurm/submit-1.sbatch")).expect("script");
    for line in [
        "#SBATCH --requeue",
        "#SBATCH --signal=B:TERM@60",
        "#SBATCH --time=10",
    ] {
        assert!(script.contains(line), "{line} missing:\n{script}");
    }

    // Preempt member 0 once it trains: SIGTERM to the batch shell, as at the time limit.
    // Waiting for its first commit past step 0 (a tenth of the run) rather than for the run
    // folder: in the first moments of an element, slurmd may not have registered the batch
    // step yet, and `scancel --batch` then exits non-zero (229 on Slurm 22.05) without a word.
    let first = sweep.join("lr=0.003/seed-0");
    wait_for(
        Duration::from_secs(60),
        "member 0 to train",
        || trainer_pid(&first).is_some() && committed_step(&first) > 0,
        || logs(&sweep),
    );
    let log0_path = sweep.join(format!("slurm/logs/{job}_0.out"));
    let stopped = || {
        std::fs::read_to_string(&log0_path).is_ok_and(|l| l.contains("stopped by a signal at step"))
    };
    let pid = trainer_pid(&first);
    for attempt in 1.. {
        let out = cluster.run(
            "scancel",
            &["--batch", "--signal=TERM", &format!("{job}_0")],
        );
        if out.status.success() {
            break;
        }
        // Refused, yet the signal may have got through: send it again only while the same
        // trainer still runs and has not said it stopped.
        std::thread::sleep(Duration::from_secs(2));
        if stopped() || trainer_pid(&first) != pid {
            break;
        }
        assert!(
            attempt < 5,
            "scancel refused {attempt} times: {:?} {:?}\n{}",
            out.status,
            text(&out),
            cluster.queue()
        );
    }
    let status = || {
        String::from_utf8_lossy(
            &cluster
                .gtk(w, &["sweep", "status", "slurm-runs/grid"])
                .stdout,
        )
        .into_owned()
    };
    wait_for(
        Duration::from_secs(120),
        "every member to be done",
        || status().contains("6 members: 6 done"),
        || format!("{}\n{}\n{}", status(), logs(&sweep), cluster.queue()),
    );
    let log0 = std::fs::read_to_string(&log0_path).expect("log");
    assert!(log0.contains("stopped by a signal at step"), "{log0}");
    assert!(log0.contains("requeueing it"), "{log0}");
    assert!(log0.contains("attempt 2"), "{log0}");
    assert!(log0.contains("resuming at step"), "{log0}");
    let st = status();
    assert!(
        st.contains("all done; the summary: gtk sweep summary"),
        "{st}"
    );

    cluster.gtk_ok(w, &["sweep", "summary", "slurm-runs/grid"]);
    let mut local = grid.to_vec();
    local.extend(["--runs-dir", "local-runs", "--jobs", "2"]);
    cluster.gtk_ok(w, &local);
    let a = std::fs::read(sweep.join("summary.json")).expect("slurm summary");
    let b = std::fs::read(w.join("local-runs/grid/summary.json")).expect("local summary");
    assert!(a == b, "summary.json differs between the launchers");
    assert_eq!(
        std::fs::read(sweep.join("summary.md")).expect("md"),
        std::fs::read(w.join("local-runs/grid/summary.md")).expect("md")
    );
    eprintln!(
        "grid sweep on Slurm, preempted, and locally: {:.1} s",
        started.elapsed().as_secs_f64()
    );

    bad_submissions(&cluster, w);
    killed_member_is_failed_and_rerun(&cluster);
    eprintln!(
        "slurm launcher test: {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
}

/// A partition the cluster lacks: sbatch's refusal in one line, the sweep folder kept.
fn bad_submissions(cluster: &Cluster, w: &Path) {
    let out = cluster.gtk(
        w,
        &[
            "train",
            "--seeds",
            "0..2",
            "--steps",
            "10",
            "--name",
            "bad",
            "--runs-dir",
            "slurm-runs",
            "--launcher",
            "slurm",
            "--partition",
            "nope",
            "--quiet",
        ],
    );
    assert_clean_error(
        &without_shared_path_warning(out),
        &["sbatch refused the job", "invalid partition", "--resume"],
    );
    let bad = w.join("slurm-runs/bad");
    assert!(bad.join("sweep.json").is_file());
    assert!(!bad.join("slurm/jobs.json").exists());
}

/// `out` without gtk's warning that the sweep folder may not be visible to the cluster's
/// nodes: a checkout under /tmp (a CI's clean clone) puts this test's sweeps under /tmp too,
/// where gtk rightly warns (`killed_member_is_failed_and_rerun` checks that warning).
fn without_shared_path_warning(mut out: Output) -> Output {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let kept: Vec<&str> = (stderr.lines())
        .filter(|l| !l.contains("may not be visible to the cluster's nodes"))
        .collect();
    out.stderr = format!("{}\n", kept.join("\n")).into_bytes();
    out
}

/// A member killed with SIGKILL is reported failed with its last commit kept; resubmitting
/// resumes it from there. The sweep sits under /tmp, which is warned about.
fn killed_member_is_failed_and_rerun(cluster: &Cluster) {
    let tmp = tempfile::Builder::new()
        .prefix("gtk-slurm-kill")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let w = tmp.path();
    let steps = KILL_STEPS.to_string();
    let out = cluster.gtk(
        w,
        &[
            "train",
            "--seeds",
            "0",
            "--steps",
            &steps,
            "--name",
            "k",
            "--launcher",
            "slurm",
            "--no-summary-job",
            "--quiet",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.starts_with("warning: the sweep folder") && stderr.contains("under /tmp"),
        "{stderr}"
    );
    let sweep = w.join("runs/k");
    let run = sweep.join("seed-0");
    wait_for(
        Duration::from_secs(60),
        "the member to commit a step",
        || committed_step(&run) > 0 && trainer_pid(&run).is_some(),
        || logs(&sweep),
    );
    let pid = trainer_pid(&run).expect("pid");
    let status = Command::new("kill").args(["-9", &pid.to_string()]).status();
    assert!(status.is_ok_and(|s| s.success()));
    let st = || {
        String::from_utf8_lossy(&cluster.gtk(w, &["sweep", "status", "runs/k"]).stdout).into_owned()
    };
    wait_for(
        Duration::from_secs(30),
        "the failure",
        || st().contains("failed"),
        || format!("{}\n{}", logs(&sweep), cluster.queue()),
    );
    let s = st();
    assert!(s.contains("killed by SIGKILL"), "{s}");
    assert!(s.contains("gtk train --resume"), "{s}");
    let kept = committed_step(&run);
    assert!(kept > 0 && kept < KILL_STEPS, "{kept}");
    let out = cluster.gtk(w, &["sweep", "summary", "runs/k"]);
    assert_clean_error(&out, &["1 of 1 members not done", "seed 0 (failed at step"]);
    // Rerun: only the member not done is submitted, and it resumes from its commit.
    let out = cluster.gtk(
        w,
        &[
            "train",
            "--resume",
            "runs/k",
            "--launcher",
            "slurm",
            "--no-summary-job",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 member submitted"), "{stdout}");
    wait_for(
        Duration::from_secs(90),
        "the rerun",
        || st().contains("1 done"),
        || format!("{}\n{}", logs(&sweep), cluster.queue()),
    );
    assert!(
        logs(&sweep).contains(&format!("resuming at step {kept}/{KILL_STEPS}")),
        "{}",
        logs(&sweep)
    );
}
