//! Damaged run folders and bad outputs: every case is one error line (exit 2), no panic, and
//! nothing written — or, where the damage does not matter, the correct result.

mod common;
use common::*;
use std::path::{Path, PathBuf};

const SMALL: &str = r#"
[run]
model = "MODELS/linear.toml"
steps = 20
eval_every = 10
eval_train_limit = 20
[defaults]
kind = "linear"
inputs = 8
outputs = 4
train = 20
test = 50
[[task]]
name = "a"
[[task]]
name = "b"
"#;

fn trained(dir: &Path) -> PathBuf {
    let set = write_task_set(dir, "small.toml", SMALL);
    let out = gtk(
        dir,
        &[
            "train",
            "--task-set",
            set.to_str().unwrap(),
            "--strategy",
            "all",
            "--name",
            "r",
            "--quiet",
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    dir.join("runs/r")
}

fn checkpoint_of(run: &Path) -> PathBuf {
    std::fs::read_dir(run)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("checkpoint-")
        })
        .expect("a checkpoint")
}

#[test]
fn export_never_deletes_what_it_did_not_write() {
    let tmp = tempfile::tempdir().unwrap();
    let run = trained(tmp.path());
    let before = fingerprint(tmp.path());
    // The run itself, the runs folder, a folder inside the run, the current folder.
    for (out, needle) in [
        ("runs/r", "is the run being read"),
        ("runs", "contains the run"),
        ("runs/r/exported", "is inside the run"),
        (".", "contains the run"),
    ] {
        let res = gtk(tmp.path(), &["export", "runs/r", "--out", out]);
        assert_clean_error(&res, &[out, needle]);
    }
    // A user's folder with files in it.
    std::fs::create_dir(tmp.path().join("mine")).unwrap();
    std::fs::write(tmp.path().join("mine/notes.txt"), "keep me").unwrap();
    let res = gtk(tmp.path(), &["export", "runs/r", "--out", "mine"]);
    assert_clean_error(&res, &["mine", "not empty", "--force"]);
    let res = gtk(
        tmp.path(),
        &["export", "runs/r", "--out", "mine", "--force"],
    );
    assert_clean_error(&res, &["mine", "--force replaces only gatekit's own files"]);
    // A folder holding runs, even when it is not the run's parent.
    std::fs::create_dir_all(tmp.path().join("other/runs2")).unwrap();
    std::fs::copy(
        run.join("config.toml"),
        tmp.path().join("other/runs2/config.toml"),
    )
    .unwrap();
    let res = gtk(tmp.path(), &["export", "runs/r", "--out", "other"]);
    assert_clean_error(&res, &["other", "holds run folders"]);
    // An existing file: refused before any work.
    std::fs::write(tmp.path().join("file.bin"), "data").unwrap();
    let res = gtk(tmp.path(), &["export", "runs/r", "--out", "file.bin"]);
    assert_clean_error(&res, &["file.bin", "is not a folder"]);
    let mut after = fingerprint(tmp.path());
    for p in ["mine/notes.txt", "file.bin", "other/runs2/config.toml"] {
        after.remove(&tmp.path().join(p));
    }
    assert!(after == before, "a refused export changed files");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("mine/notes.txt")).unwrap(),
        "keep me"
    );

    // An empty folder is filled; a second export needs --force and replaces only its files.
    std::fs::create_dir(tmp.path().join("empty")).unwrap();
    assert!(
        gtk(tmp.path(), &["export", "runs/r", "--out", "empty"])
            .status
            .success()
    );
    assert!(tmp.path().join("empty/a.onnx").is_file());
    let again = gtk(tmp.path(), &["export", "runs/r", "--out", "empty"]);
    assert_clean_error(&again, &["not empty", "--force"]);
    assert!(
        gtk(
            tmp.path(),
            &["export", "runs/r", "--out", "empty", "--force"]
        )
        .status
        .success()
    );
    std::fs::write(tmp.path().join("empty/extra.txt"), "mine").unwrap();
    let res = gtk(
        tmp.path(),
        &["export", "runs/r", "--out", "empty", "--force"],
    );
    assert_clean_error(&res, &["extra.txt", "did not write"]);
    assert!(tmp.path().join("empty/extra.txt").is_file());
    // A killed export's temp folder (its process gone) is removed by the next export there.
    let stale = tmp.path().join(".fresh.tmp-999999999");
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("a.onnx"), "half").unwrap();
    assert!(
        gtk(tmp.path(), &["export", "runs/r", "--out", "fresh"])
            .status
            .success()
    );
    assert!(!stale.exists(), "the stale temp folder is still there");
    // report and adapt follow the same rules.
    let res = gtk(tmp.path(), &["report", "runs/r", "--out", "runs"]);
    assert_clean_error(&res, &["runs", "contains the run"]);
    let res = gtk(tmp.path(), &["report", "runs/r", "--out", "mine"]);
    assert_clean_error(&res, &["mine", "not empty"]);
}

#[test]
fn damaged_run_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let run = trained(tmp.path());
    let ckpt = checkpoint_of(&run);
    let ckpt_name = ckpt.file_name().unwrap().to_string_lossy().into_owned();
    let good_ckpt = std::fs::read(&ckpt).unwrap();
    let good_state = std::fs::read_to_string(run.join("state.json")).unwrap();
    let good_config = std::fs::read_to_string(run.join("config.toml")).unwrap();

    // A flipped bit in the checkpoint: the checksum names the file.
    let mut bad = good_ckpt.clone();
    let at = bad.len() - 5;
    bad[at] ^= 0x10;
    std::fs::write(&ckpt, &bad).unwrap();
    for cmd in [
        vec!["eval", "runs/r"],
        vec!["export", "runs/r", "--out", "x"],
        vec!["train", "--resume", "runs/r"],
    ] {
        assert_clean_error(&gtk(tmp.path(), &cmd), &[&ckpt_name, "checksum mismatch"]);
    }
    std::fs::write(&ckpt, &good_ckpt).unwrap();

    // config.toml edited after the run started.
    std::fs::write(
        run.join("config.toml"),
        good_config.replace("steps = 20", "steps = 40"),
    )
    .unwrap();
    assert_clean_error(
        &gtk(tmp.path(), &["eval", "runs/r"]),
        &["config.toml", "was changed after"],
    );
    std::fs::write(run.join("config.toml"), &good_config).unwrap();

    // state.json edits that used to panic or empty the checkpoint.
    for (from, to, needle) in [
        (
            "\"strategies\": [\n      \"gated\",\n      \"shared\",\n      \"separate\"\n    ]",
            "\"strategies\": []",
            "no strategy",
        ),
        (
            "\"gated\",\n      \"shared\"",
            "\"gated\",\n      \"gated\"",
            "twice",
        ),
        (
            "\"steps_per_task\": 1",
            "\"steps_per_task\": 0",
            "steps_per_task",
        ),
        ("\"current\": ", "\"current\": 9", "does not exist"),
        ("\"step\": 20", "\"step\": 99", "past the run's 20 steps"),
        ("\"step\": 20", "\"step\": 10", "holds step 20"),
        (
            "\"format\": \"gatekit-run/2\"",
            "\"format\": \"gatekit-run/9\"",
            "not supported",
        ),
    ] {
        assert!(
            good_state.contains(from),
            "fixture lacks `{from}`:\n{good_state}"
        );
        std::fs::write(run.join("state.json"), good_state.replacen(from, to, 1)).unwrap();
        for cmd in [vec!["eval", "runs/r"], vec!["train", "--resume", "runs/r"]] {
            assert_clean_error(&gtk(tmp.path(), &cmd), &["state.json", needle]);
        }
        assert_eq!(
            std::fs::read(&ckpt).unwrap(),
            good_ckpt,
            "{to}: the checkpoint changed"
        );
    }
    std::fs::write(run.join("state.json"), &good_state).unwrap();

    // A NaN in a checkpoint whose checksum was updated to match (a tool rewrote both): the
    // tensor is named.
    let st = safetensors::SafeTensors::deserialize(&good_ckpt).unwrap();
    let (name, view) = st
        .tensors()
        .into_iter()
        .find(|(n, _)| n == "gated/fc1.weight")
        .expect("gated/fc1.weight");
    let start = good_ckpt.len()
        - st.tensors()
            .iter()
            .map(|(_, v)| v.data().len())
            .sum::<usize>();
    let offset = view.data().as_ptr() as usize - good_ckpt.as_ptr() as usize;
    assert!(offset >= start);
    let mut nan = good_ckpt.clone();
    nan[offset..offset + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&ckpt, &nan).unwrap();
    let sha = |b: &[u8]| gatekit::run_folder::sha256_hex(b);
    std::fs::write(
        run.join("state.json"),
        good_state.replace(&sha(&good_ckpt), &sha(&nan)),
    )
    .unwrap();
    for cmd in [
        vec!["eval", "runs/r"],
        vec!["export", "runs/r", "--out", "x"],
    ] {
        assert_clean_error(
            &gtk(tmp.path(), &cmd),
            &[&ckpt_name, &format!("tensor `{name}` holds NaN")],
        );
    }
    std::fs::write(&ckpt, &good_ckpt).unwrap();
    std::fs::write(run.join("state.json"), &good_state).unwrap();
    assert!(!tmp.path().join("x").exists());

    // A torn line after the committed log is dropped by the next writer, with a note; readers
    // never see it.
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(run.join("metrics.jsonl"))
        .unwrap();
    std::io::Write::write_all(&mut log, b"{\"record\":\"train\",\"st").unwrap();
    drop(log);
    assert!(gtk(tmp.path(), &["eval", "runs/r"]).status.success());
    assert!(
        gtk(tmp.path(), &["report", "runs/r", "--out", "rep"])
            .status
            .success()
    );
    let resumed = gtk(tmp.path(), &["train", "--resume", "runs/r"]);
    let (_, stderr) = text(&resumed);
    assert!(resumed.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "dropped 1 line(s) logged after the last commit (step 20), the last of them torn"
        ),
        "{stderr}"
    );

    // The checkpoint removed by hand.
    std::fs::remove_file(&ckpt).unwrap();
    assert_clean_error(
        &gtk(tmp.path(), &["eval", "runs/r"]),
        &[&ckpt_name, "missing"],
    );
}

#[test]
fn sizes_are_checked_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let long = "t".repeat(300);
    let set = write_task_set(
        tmp.path(),
        "long.toml",
        &SMALL.replace("name = \"a\"", &format!("name = \"{long}\"")),
    );
    let out = gtk(
        tmp.path(),
        &["train", "--task-set", set.to_str().unwrap(), "--name", "r"],
    );
    assert_clean_error(&out, &["task[0].name", "300 characters long; at most 64"]);
    let set = write_task_set(
        tmp.path(),
        "con.toml",
        &SMALL.replace("name = \"a\"", "name = \"CON\""),
    );
    let out = gtk(
        tmp.path(),
        &["train", "--task-set", set.to_str().unwrap(), "--name", "r"],
    );
    assert_clean_error(&out, &["task[0].name", "reserved by Windows"]);
    let out = gtk(tmp.path(), &["train", "--name", &"n".repeat(65)]);
    assert_clean_error(&out, &["--name", "at most 64"]);
    // A layer with 2e9 outputs: refused with its name, not a failed allocation.
    let model = tmp.path().join("huge.toml");
    std::fs::write(&model, "name = \"huge\"\ninput = [8]\n[[layer]]\ntype = \"linear\"\nname = \"big\"\nout = 2000000000\n[[layer]]\ntype = \"linear\"\nout = 4\n").unwrap();
    let set = write_task_set(
        tmp.path(),
        "huge-set.toml",
        &SMALL.replace("MODELS/linear.toml", model.to_str().unwrap()),
    );
    let out = gtk(
        tmp.path(),
        &["train", "--task-set", set.to_str().unwrap(), "--name", "r"],
    );
    assert_clean_error(
        &out,
        &["model.big", "18000000000 parameters", "GiB of memory"],
    );
    assert_eq!(entries(&tmp.path().join("runs")), 0);
}

/// A small deterministic generator for the mutations (no extra crate needed).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Property: any damage to a run folder's files (truncation, flipped bytes, edited JSON or
/// TOML values, deleted files) gives either the undamaged result or one error line — never a
/// panic — and the reader writes nothing.
#[test]
fn mutated_run_folders_never_panic_and_are_never_written() {
    let tmp = tempfile::tempdir().unwrap();
    let run = trained(tmp.path());
    let good = gtk(tmp.path(), &["eval", "runs/r"]);
    assert!(good.status.success());
    let good_out = text(&good).0;
    let files: Vec<PathBuf> = ["config.toml", "state.json", "metrics.jsonl"]
        .iter()
        .map(|f| run.join(f))
        .chain([checkpoint_of(&run)])
        .collect();
    let originals: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let mut rng = Lcg(12345);
    let (mut errors, mut same) = (0, 0);
    for case in 0..120 {
        let i = rng.below(files.len());
        let mut bytes = originals[i].clone();
        let what = match rng.below(5) {
            0 => {
                let n = rng.below(bytes.len());
                bytes.truncate(n);
                format!("truncate to {n}")
            }
            1 => {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
                format!("flip a bit at {at}")
            }
            2 => {
                // Replace a run of digits with another number.
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let digits: Vec<usize> = text
                    .char_indices()
                    .filter(|(_, c)| c.is_ascii_digit())
                    .map(|(i, _)| i)
                    .collect();
                if digits.is_empty() {
                    continue;
                }
                let at = digits[rng.below(digits.len())];
                let value = ["0", "-1", "99999999999999999999", "1e400", "nan", "7"][rng.below(6)];
                let mut t = text.clone();
                t.replace_range(at..at + 1, value);
                bytes = t.into_bytes();
                format!("digit at {at} -> {value}")
            }
            3 => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let quotes: Vec<usize> = text.match_indices('"').map(|(i, _)| i).collect();
                if quotes.is_empty() {
                    continue;
                }
                let at = quotes[rng.below(quotes.len())];
                let mut t = text.clone();
                t.insert_str(at + 1, ["x", "gated", "../", "\\u0000"][rng.below(4)]);
                bytes = t.into_bytes();
                format!("string edit at {at}")
            }
            _ => {
                std::fs::remove_file(&files[i]).unwrap();
                bytes.clear();
                "delete".to_string()
            }
        };
        if what != "delete" {
            std::fs::write(&files[i], &bytes).unwrap();
        }
        let before = fingerprint(tmp.path());
        let out = gtk(tmp.path(), &["eval", "runs/r"]);
        let (stdout, stderr) = text(&out);
        let context = format!("case {case}: {} {what}", files[i].display());
        assert!(!stderr.contains("panicked"), "{context}: {stderr}");
        match out.status.code() {
            Some(0) => {
                assert_eq!(
                    stdout, good_out,
                    "{context}: accepted with a different result"
                );
                same += 1;
            }
            Some(2) => {
                let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
                assert_eq!(lines.len(), 1, "{context}: {stderr}");
                errors += 1;
            }
            other => panic!("{context}: exit {other:?}: {stderr}"),
        }
        assert!(
            fingerprint(tmp.path()) == before,
            "{context}: the reader wrote"
        );
        std::fs::write(&files[i], &originals[i]).unwrap();
    }
    assert!(errors > 60, "{errors} errors, {same} unchanged results");
}
