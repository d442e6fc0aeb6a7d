//! Command-line arguments (clap derive); doc comments are the help text.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Train one network on many tasks with conditional weights (W ⊙ σ(M_t)).
#[derive(Debug, Parser)]
#[command(name = "gtk", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// One value per process, parsed once: its size does not matter, and boxing the arguments
// would only add derefs to every command.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Train a task set (the built-in sinusoid set when no --task-set is given).
    Train(TrainArgs),
    /// Re-evaluate a run's checkpoint on its test sets.
    Eval(EvalArgs),
    /// List the registered task kinds, or show one in detail.
    Tasks(TasksArgs),
    /// Fetch or verify datasets (MNIST) in the data folder.
    Data(DataArgs),
    /// Export a run's gated model: 1-bit masks, shared weights and one ONNX model per task.
    Export(ExportArgs),
    /// Figures, report.md and report.html for one run (or several side by side), and the runs'
    /// TensorBoard event files.
    Report(ReportArgs),
    /// Adapt a trained run to new tasks (pick, mix or learn a mask; W frozen) and write the
    /// adapted run folder.
    Adapt(AdaptArgs),
    /// Serve an export or a run over HTTP: W once, each task's 1-bit mask switched per request.
    Serve(ServeArgs),
    /// A sweep's members (`gtk train --seeds`, local or on Slurm): their status, and the
    /// summary once all are done.
    Sweep(SweepArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StrategyArg {
    /// Shared W, one mask per task.
    Gated,
    /// One plain model for all tasks.
    Shared,
    /// One plain model per task.
    Separate,
    /// Sequential schedule: one plain model trained through the phases (no protection).
    Finetune,
    /// Sequential schedule: one plain model trained on all tasks interleaved (upper bound).
    Joint,
    /// Sequential schedule: finetune plus EWC's penalty λ/2 Σ F (θ − θ*)², one per finished
    /// task (run.ewc_lambda, run.ewc_samples).
    Ewc,
    /// Sequential schedule: finetune plus online EWC's one running Fisher F ← γF + F_new
    /// (run.ewc_lambda, run.ewc_gamma, run.ewc_samples).
    OnlineEwc,
    /// Sequential schedule: finetune plus Synaptic Intelligence's penalty c Σ Ω (θ − θ*)²
    /// (run.si_c, run.si_xi).
    Si,
    /// XdG (Masse et al. 2018): one plain model, a fixed random gate per task on every hidden
    /// unit with a share run.xdg_share_off of each hidden layer off; needs the task id.
    Xdg,
    /// Every strategy of the schedule side by side, with a comparison table: gated, shared and
    /// separate (interleaved); gated, finetune, separate and joint (sequential).
    All,
}

/// `--runs-dir`, shared by the commands that write or look up runs.
#[derive(Debug, Args)]
pub struct RunsDir {
    /// Folder of run folders: where `gtk train` writes runs, and where eval, export and report
    /// take the most recently trained run from when no RUN is given.
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub runs_dir: PathBuf,
}

/// `--data-dir`, shared by every command that reads datasets.
#[derive(Debug, Args)]
pub struct DataDir {
    /// Data folder (MNIST in DIR/mnist); default: $GATEKIT_DATA, else $XDG_CACHE_HOME/gatekit
    /// or ~/.cache/gatekit.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `--quiet`, shared by the commands that print more than their result.
#[derive(Debug, Args)]
pub struct Quiet {
    /// Print only the results and where they were written: no progress, log lines, notes or
    /// details (file sizes, TensorBoard hints).
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Task-set file (TOML); default: the built-in tasks/sinusoid.toml.
    #[arg(long, value_name = "FILE")]
    pub task_set: Option<PathBuf>,
    /// Which strategies to train, comma separated (e.g. gated,separate), or `all`.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        value_name = "LIST",
        default_value = "gated"
    )]
    pub strategy: Vec<StrategyArg>,
    /// Run name (folder under --runs-dir); default: task-set name and time.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub runs_dir: RunsDir,
    /// Override the task set's seed.
    #[arg(long, conflicts_with = "seeds")]
    pub seed: Option<u64>,
    /// Train once per seed, e.g. 0..5 (seeds 0 to 4), 0..=4, 0,3,7 or 0..3,7: a sweep folder holding
    /// one run folder per seed (seed-0, …), run in parallel, then the summary over seeds
    /// (mean, 95 % interval, paired differences) in summary.json and summary.md.
    #[arg(long, value_name = "LIST")]
    pub seeds: Option<String>,
    /// Set a `[run]` or `[defaults]` key of the task set, as if the file held the value, e.g.
    /// `--set lr=0.003` or `--set defaults.noise=0.1` (repeatable). With --seeds, several
    /// values (`--set lr=0.003,0.01 --set mask_lr=0.03,0.1`) make a grid: every combination
    /// trains once per seed, in SWEEP/lr=0.003,mask_lr=0.03/seed-0 and so on, and the summary
    /// ranks the configurations.
    #[arg(long = "set", value_name = "KEY=V1,V2")]
    pub set: Vec<String>,
    /// With --seeds (or --resume of a sweep): how many seeds train at once; default: the
    /// cores divided by --threads-per-run.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// With --seeds (or --resume of a sweep): where the members run: `local` processes on
    /// this machine, or `slurm`, one sbatch array job (an element per member, submitted and
    /// left to Slurm; follow it with `gtk sweep status SWEEP`).
    #[arg(long, value_enum, default_value_t = LauncherArg::Local)]
    pub launcher: LauncherArg,
    #[command(flatten)]
    pub slurm: SlurmArgs,
    /// With --seeds (or --resume of a sweep): threads of each seed's process (default 1; the
    /// results of a run can depend on its thread count, never on --jobs).
    #[arg(long, value_name = "N")]
    pub threads_per_run: Option<usize>,
    /// Machine-readable progress on stdout (`@step N/TOTAL`), for the sweep that started
    /// this process.
    #[arg(long, hide = true)]
    pub progress_lines: bool,
    /// Exit when stdin closes: set by a sweep on the processes it starts, so they stop
    /// when it is killed.
    #[arg(long, hide = true)]
    pub exit_with_parent: bool,
    /// Override the task set's step count.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Stop after this many steps and save a checkpoint (continue later with --resume).
    #[arg(long, value_name = "STEP")]
    pub stop_at: Option<usize>,
    /// Learning rate of W, replacing the task set's `lr`: a new run records it in its
    /// config.toml; with --resume it applies from now on (e.g. after a divergence) and is kept
    /// in the run's state.json. Not with --seeds (set `lr` in the task set).
    #[arg(long)]
    pub lr: Option<f64>,
    /// The masks' learning rate, replacing `mask_lr` the same way (a `mask_lr` derived from
    /// `mask_lr_scale` is not recomputed from --lr).
    #[arg(long)]
    pub mask_lr: Option<f64>,
    /// Continue a stopped run from its checkpoint, or a stopped sweep (its finished seeds are
    /// kept, the others resumed or started).
    #[arg(long, value_name = "RUN", conflicts_with_all = ["task_set", "strategy", "name", "seed", "seeds", "steps", "set"])]
    pub resume: Option<PathBuf>,
    /// With --resume: go on although a data file changed since the run recorded it (size and
    /// SHA-256); the change is printed and recorded in the run's state.json.
    #[arg(long, requires = "resume")]
    pub allow_changed_data: bool,
    #[command(flatten)]
    pub data: DataDir,
    #[command(flatten)]
    pub quiet: Quiet,
}

/// Where a sweep's members run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LauncherArg {
    /// Processes on this machine, --jobs at a time; the summary when all are done.
    Local,
    /// One Slurm array job (sbatch --array), an element per member; nothing waits for it.
    Slurm,
}

/// The resources of `--launcher slurm`, replacing the task set's `[launcher.slurm]` values.
#[derive(Debug, Args)]
#[command(next_help_heading = "Slurm launcher (--launcher slurm)")]
pub struct SlurmArgs {
    /// sbatch --partition.
    #[arg(long, value_name = "NAME")]
    pub partition: Option<String>,
    /// sbatch --time of each member, e.g. 30, 2:00:00 or 1-00:00:00.
    #[arg(long, value_name = "LIMIT")]
    pub time: Option<String>,
    /// sbatch --cpus-per-task (default: --threads-per-run).
    #[arg(long, value_name = "N")]
    pub cpus_per_task: Option<usize>,
    /// sbatch --mem of each member, e.g. 4G.
    #[arg(long, value_name = "SIZE")]
    pub mem: Option<String>,
    /// sbatch --account.
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
    /// Another #SBATCH option for the array script, e.g. --sbatch-option=--qos=long
    /// (repeatable).
    #[arg(
        long = "sbatch-option",
        value_name = "OPTION",
        allow_hyphen_values = true
    )]
    pub sbatch_options: Vec<String>,
    /// Requeues of a member stopped by SIGTERM (preemption, time limit) before it is left
    /// stopped (default 20).
    #[arg(long, value_name = "N")]
    pub max_requeues: Option<u32>,
    /// Do not submit the dependent job that writes the summary once the array has ended
    /// (write it later with `gtk sweep summary SWEEP`).
    #[arg(long)]
    pub no_summary_job: bool,
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    #[command(subcommand)]
    pub command: SweepCommand,
}

#[derive(Debug, Subcommand)]
pub enum SweepCommand {
    /// Each member's state (pending, running, done, stopped, failed with its error) and step,
    /// from the run folders and, on Slurm, squeue and sacct.
    Status(SweepDirArgs),
    /// Write summary.json and summary.md once every member is done (else list those that are
    /// not).
    Summary(SweepDirArgs),
    /// Train one member of a sweep (what each Slurm array element runs): a new run, or the
    /// resume of its run folder; nothing when it is done.
    #[command(hide = true)]
    RunMember(RunMemberArgs),
}

#[derive(Debug, Args)]
pub struct SweepDirArgs {
    /// The sweep folder (made by gtk train --seeds).
    pub sweep: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunMemberArgs {
    /// The sweep folder.
    pub sweep: PathBuf,
    /// The member's index (0-based, in the order of gtk sweep status); an array element gives
    /// $SLURM_ARRAY_TASK_ID.
    pub index: usize,
    /// With a resume: go on although a data file changed since the run recorded it.
    #[arg(long)]
    pub allow_changed_data: bool,
    #[command(flatten)]
    pub data: DataDir,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeArg {
    /// gatekit's own interpreter of the ONNX graph, always built.
    Reference,
    /// tract-onnx (pure Rust), in builds with the `tract` feature.
    Tract,
    /// candle-onnx, in builds with the `candle-onnx` feature.
    Candle,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Run folder, e.g. runs/sinusoid-20261126-101500; default: the most recently trained run
    /// under --runs-dir. Only read: eval writes nothing.
    #[arg(conflicts_with = "onnx")]
    pub run: Option<PathBuf>,
    /// Evaluate an exported ONNX file on its task's test set instead (in --runtime).
    #[arg(long, value_name = "FILE")]
    pub onnx: Option<PathBuf>,
    /// With --onnx on all_tasks.onnx: which task to evaluate.
    #[arg(long, requires = "onnx")]
    pub task: Option<String>,
    /// With --onnx: the ONNX runtime (tract and candle only in builds with `--features tract`,
    /// `--features candle-onnx`).
    #[arg(long, value_enum, default_value_t = RuntimeArg::Reference, requires = "onnx")]
    pub runtime: RuntimeArg,
    /// Go on although a data file changed since the run recorded it (size and SHA-256); the
    /// numbers are then on the new data, and a note says so.
    #[arg(long, conflicts_with = "onnx")]
    pub allow_changed_data: bool,
    /// Withhold the task id: infer each test batch's task from one gradient of this objective
    /// over the stored masks (SupSup), score a wrongly inferred batch 0, and report inference
    /// accuracy and accuracy with the task inferred and given (gated strategy only).
    #[arg(long, value_enum, value_name = "OBJECTIVE", conflicts_with = "onnx")]
    pub infer_task: Option<InferSignalArg>,
    /// With --infer-task: one gradient, or halving the candidates (⌈log₂ T⌉ gradients).
    #[arg(long, value_enum, default_value_t = PickVariantArg::OneShot, requires = "infer_task")]
    pub infer_variant: PickVariantArg,
    /// With --infer-task: infer and score with the binarized gates 1[M > 0] (a `ste` run's
    /// trained gates are binary already).
    #[arg(long, requires = "infer_task")]
    pub infer_binary: bool,
    /// With --infer-task: test examples per inference.
    #[arg(long, default_value_t = 128, value_name = "N", requires = "infer_task")]
    pub infer_batch: usize,
    /// With --infer-task: score only the first N test examples of each task (0 = all).
    #[arg(long, default_value_t = 0, value_name = "N", requires = "infer_task")]
    pub infer_limit: usize,
    /// With --infer-task: outputs the labels use (the first ones); the rest are the unused
    /// outputs of the logsumexp objective.
    #[arg(long, default_value_t = 10, value_name = "N", requires = "infer_task")]
    pub used_outputs: usize,
    /// With --infer-task: also measure each mask's density and output gain (mean logit norm and
    /// max-softmax on its own and on 9 other tasks' data) on N test examples per task.
    #[arg(long, default_value_t = 0, value_name = "N", requires = "infer_task")]
    pub profile_masks: usize,
    /// With --infer-task: print the report as JSON (per-task votes included).
    #[arg(long, requires = "infer_task")]
    pub json: bool,
    #[command(flatten)]
    pub runs_dir: RunsDir,
    #[command(flatten)]
    pub data: DataDir,
    #[command(flatten)]
    pub quiet: Quiet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InferSignalArg {
    /// Mean output entropy (SupSup's one-shot objective).
    Entropy,
    /// logsumexp with the used outputs held constant (SupSup's `supsup_g`; needs unused outputs).
    Logsumexp,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Run folder; default: the most recently trained run under --runs-dir.
    pub run: Option<PathBuf>,
    /// Bake W ⊙ 1[M > 0] into the ONNX models (default: the trained gate W ⊙ σ(M)).
    #[arg(long)]
    pub binarize: bool,
    /// With --binarize: rescale each parameter's kept weights by their mean trained gate.
    #[arg(long)]
    pub rescale: bool,
    /// With --binarize, for a model with batch norm: batches (of the run's batch size) of each
    /// task's training data that re-estimate its statistics under its binarized mask; 0 keeps
    /// the statistics gathered in training under the soft gates.
    #[arg(long, value_name = "N", default_value_t = gatekit::run::DEFAULT_BN_BATCHES)]
    pub bn_batches: usize,
    /// Only these tasks, comma separated.
    #[arg(long, value_name = "A,B")]
    pub tasks: Option<String>,
    /// Replace an earlier export in --out (only the files that export wrote; anything else
    /// there is refused).
    #[arg(long)]
    pub force: bool,
    /// Output folder (new or empty); default: exports/<run name>, or exports/<run name>-2, …
    /// when that exists.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Go on although a data file changed since the run recorded it (size and SHA-256); the
    /// numbers are then on the new data, and a note says so.
    #[arg(long)]
    pub allow_changed_data: bool,
    #[command(flatten)]
    pub runs_dir: RunsDir,
    #[command(flatten)]
    pub data: DataDir,
    #[command(flatten)]
    pub quiet: Quiet,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run folders; default: the most recently trained run under --runs-dir. Several runs are
    /// also compared side by side. A sweep folder (gtk train --seeds) gives the curves as the
    /// mean over seeds with confidence bands, and the summary tables.
    #[arg(value_name = "RUN")]
    pub runs: Vec<PathBuf>,
    /// Replace an earlier report in --out (only the files that report wrote).
    #[arg(long)]
    pub force: bool,
    /// Output folder (new or empty; never inside a run); default: reports/<run name>, or
    /// reports/<A>+<B> for several runs, with -2, -3, … added when that exists.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub runs_dir: RunsDir,
    #[command(flatten)]
    pub quiet: Quiet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    /// Choose one stored mask by the gradient of the output entropy (or of the loss).
    Pick,
    /// Learn a softmax mixture of the stored masks on the K shots.
    Mix,
    /// Learn a new mask on the K shots, starting from the learned mixture.
    Mask,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PickVariantArg {
    /// One gradient at α = 1/T.
    OneShot,
    /// Keep the better half of the candidates each round.
    Halving,
}

#[derive(Debug, Args)]
pub struct AdaptArgs {
    /// The trained run folder.
    pub run: PathBuf,
    /// New-task file (TOML): task entries with the run's input and output shapes, and an
    /// optional `adapt` table of settings.
    #[arg(long, value_name = "FILE")]
    pub task_set: PathBuf,
    /// How each new task gets its mask (overrides `adapt.method`; default pick).
    #[arg(long, value_enum)]
    pub method: Option<MethodArg>,
    /// K: labelled training examples per new task (overrides `adapt.shots`; default 100).
    #[arg(long, value_name = "K")]
    pub shots: Option<usize>,
    /// Gradient steps of mix, mask and each baseline (overrides `adapt.steps`; default 200).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Pick's variant (overrides `adapt.pick.variant`).
    #[arg(long, value_enum)]
    pub pick_variant: Option<PickVariantArg>,
    /// Also measure the other two methods for the table (only --method's mask is stored).
    #[arg(long)]
    pub compare: bool,
    /// Skip the baselines (a separate model from scratch, the shared model fine-tuned).
    #[arg(long)]
    pub no_baselines: bool,
    /// Also meta-train first-order MAML and Reptile for this many meta-iterations on the
    /// run's tasks and adapt them like the other baselines (overrides `adapt.meta.iterations`).
    #[arg(long, value_name = "N")]
    pub meta_iterations: Option<usize>,
    /// Adapted run folder to create; default: RUN's name, a dash and the task-set file's stem,
    /// next to RUN (e.g. runs/colors-adapt-colors), with -2, -3, … added when that exists.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Go on although a data file changed since the run recorded it (size and SHA-256); the
    /// run's tasks are then read from the new data, and a note says so.
    #[arg(long)]
    pub allow_changed_data: bool,
    #[command(flatten)]
    pub data: DataDir,
    #[command(flatten)]
    pub quiet: Quiet,
}

#[derive(Debug, Args)]
pub struct TasksArgs {
    /// Show this kind's parameters in detail.
    pub kind: Option<String>,
    /// Print the task-kind reference as Markdown (every kind, or KIND only), as in the book.
    #[arg(long)]
    pub markdown: bool,
}

#[derive(Debug, Args)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Download a dataset from its public mirrors, check its sha256 and install it.
    Fetch(FetchArgs),
    /// Check that a dataset is complete and intact (files, checksums, record counts).
    Verify(VerifyArgs),
    /// Write a task's examples exactly as the model sees them (after the task's preprocessing)
    /// with their labels: FILE.npy and FILE.labels.npy, or x and y in FILE.npz.
    Dump(DumpArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SplitArg {
    /// The training examples.
    Train,
    /// The test examples (what `gtk eval` measures).
    Test,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Task-set file, or a run folder (the task set as trained, with the statistics it stored).
    #[arg(value_name = "TASK-SET")]
    pub source: PathBuf,
    /// Which task (needed when the set has more than one).
    #[arg(long)]
    pub task: Option<String>,
    /// Which split.
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    pub split: SplitArg,
    /// Only the first N examples of the split (default: all).
    #[arg(short = 'n', long, value_name = "N")]
    pub examples: Option<usize>,
    /// FILE.npy: inputs there (float32 [n, ...input shape]), labels in FILE.labels.npy (int64
    /// [n], or float32 [n, outputs] for regression); FILE.npz: both, as x and y. Never replaces
    /// an existing file.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub data: DataDir,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DatasetArg {
    /// MNIST handwritten digits, installed in <data dir>/mnist.
    Mnist,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Which dataset.
    #[arg(value_enum)]
    pub dataset: DatasetArg,
    #[command(flatten)]
    pub data: DataDir,
    /// Mirror base URL to use instead of the built-in list; repeat to try several in order.
    #[arg(long = "mirror", value_name = "URL")]
    pub mirrors: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Which dataset.
    #[arg(value_enum, default_value_t = DatasetArg::Mnist)]
    pub dataset: DatasetArg,
    #[command(flatten)]
    pub data: DataDir,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}

/// `gtk serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// What to serve: an export folder written by `gtk export --binarize` (weights.safetensors,
    /// masks.safetensors, ONNX files), or a run folder, served at its last commit with its
    /// masks binarized (what `gtk export --binarize` would write) without exporting first. The
    /// server answers with the 1-bit masks, W ⊙ 1[M > 0]; a soft export is refused.
    #[arg(value_name = "EXPORT_DIR|RUN")]
    pub source: PathBuf,
    /// Serving a run whose model has batch norm: batches (of the run's batch size) of each
    /// task's training data that re-estimate its statistics under its binarized mask, as
    /// `gtk export --binarize` does; 0 keeps the statistics gathered in training.
    #[arg(long, value_name = "N", default_value_t = gatekit::run::DEFAULT_BN_BATCHES)]
    pub bn_batches: usize,
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
    /// How long a request waits for others to batch with, milliseconds, at most: only while
    /// another prediction is on its way in (being read or parsed); with none, it runs at once.
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
    /// Load new exports that appear in DIR while serving (DIR itself and its subfolders, e.g.
    /// a `gtk adapt` run exported with --binarize into a subfolder of the served export): their
    /// tasks not loaded yet are added; an export on another W is refused and logged.
    #[arg(long, value_name = "DIR")]
    pub watch: Option<PathBuf>,
    /// How often --watch reads DIR's listing, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000, requires = "watch")]
    pub watch_ms: u64,
    /// Serving a run: go on although a data file changed since the run recorded it (size and
    /// SHA-256), and say so.
    #[arg(long)]
    pub allow_changed_data: bool,
    #[command(flatten)]
    pub data: DataDir,
}
