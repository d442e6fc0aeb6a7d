//! The warning when the binarized gated model `W ⊙ 1[M > 0]` is much worse than the trained one:
//! `gtk train`, `gtk eval` and `gtk export` print it with the numbers and what helps, and stay
//! silent when the two are close.

mod common;
use common::*;

/// Masks start at N(0.5, 0.2²) (gates near 0.62, undecided) and barely move: `W` is fitted to
/// weights scaled by about 0.62, so rounding the gates up to 1 ruins the model (MSE about 2×).
const UNDECIDED: &str = r#"
[run]
model = "MODELS/linear.toml"
steps = 200
eval_every = 200
batch_size = 10
lr = 0.2
dtype = "f64"
mask_init = [0.5, 0.2]
mask_lr = 0.0001
[defaults]
kind = "linear"
inputs = 8
outputs = 4
train = 50
test = 100
noise = 0.01
[[task]]
name = "a"
[[task]]
name = "b"
"#;

fn train(dir: &std::path::Path, body: &str) -> (String, String) {
    let set = write_task_set(dir, "set.toml", body);
    let out = gtk(
        dir,
        &[
            "train",
            "--task-set",
            set.to_str().unwrap(),
            "--name",
            "r",
            "--strategy",
            "gated",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    (stdout, stderr)
}

/// `test mse X against Y (R× the soft one` from a warning: (X, Y, R).
fn numbers(warning: &str) -> (f64, f64, f64) {
    let rest = warning
        .split("test mse ")
        .nth(1)
        .unwrap_or_else(|| panic!("{warning}"));
    let mut words = rest.split_whitespace();
    let bin: f64 = words.next().unwrap().parse().unwrap();
    assert_eq!(words.next(), Some("against"));
    let soft: f64 = words.next().unwrap().parse().unwrap();
    let ratio: f64 = words
        .next()
        .unwrap()
        .trim_start_matches('(')
        .trim_end_matches('×')
        .parse()
        .unwrap();
    (bin, soft, ratio)
}

#[test]
fn train_and_export_warn_with_the_numbers_when_binarized_is_much_worse() {
    let tmp = tempfile::tempdir().unwrap();
    let (stdout, stderr) = train(tmp.path(), UNDECIDED);
    // The summary line names the metric.
    let line = stdout
        .lines()
        .find(|l| l.starts_with("gated, binarized masks"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains(": test mse "), "{line}");
    assert!(!stdout.contains("mean test metric"), "{stdout}");
    // A regression set's evaluation rate is in samples, not images.
    assert!(stdout.contains(" samples/s"), "{stdout}");
    assert!(!stdout.contains("images/s"), "{stdout}");
    let warning = stderr
        .lines()
        .find(|l| l.starts_with("warning: the binarized gated model"))
        .unwrap_or_else(|| panic!("no warning:\n{stderr}"));
    let (bin, soft, ratio) = numbers(warning);
    assert!(bin > 1.5 * soft, "{warning}");
    assert!((ratio - bin / soft).abs() < 0.06 * ratio, "{warning}");
    // The binarized number is the summary line's.
    assert!(
        line.contains(&format!("test mse {}", gatekit::train::format_metric(bin))),
        "{line}\n{warning}"
    );
    assert!(warning.contains("% of the gates"), "{warning}");
    for needle in [
        "binarize_after = 150",
        "gate = \"ste\"",
        "mask_regularizer",
        "train longer",
    ] {
        assert!(stderr.contains(needle), "`{needle}` missing:\n{stderr}");
    }
    // gtk export measures the same models again and warns too, with the rescaled number.
    let out = gtk(tmp.path(), &["export", "runs/r", "--binarize"]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let warning = stderr
        .lines()
        .find(|l| l.starts_with("warning: the binarized gated model"))
        .unwrap_or_else(|| panic!("no export warning:\n{stderr}"));
    let (ebin, esoft, _) = numbers(warning);
    assert!(ebin > 1.5 * esoft, "{warning}");
    assert!(stderr.contains("--binarize --rescale"), "{stderr}");
}

#[test]
fn no_warning_when_the_binarized_model_is_the_trained_one() {
    let tmp = tempfile::tempdir().unwrap();
    // The straight-through gate trains the binarized model itself: both numbers are equal.
    let (stdout, stderr) = train(
        tmp.path(),
        &UNDECIDED.replace("[defaults]", "gate = \"ste\"\n[defaults]"),
    );
    assert!(stdout.contains("gated, binarized masks"), "{stdout}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let out = gtk(tmp.path(), &["export", "runs/r"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("binarized"), "{stdout}");
    assert!(!stderr.contains("warning"), "{stderr}");
}
