//! `gtk report` and the TensorBoard writer: every figure exists, decodes and shows something;
//! the report's numbers are the run's numbers; event files are valid TFRecords whose CRCs,
//! tags, steps and values match `metrics.jsonl`.

mod common;
use common::*;
use crc32c::crc32c;
use gatekit::report::{BinaryMasks, RunData};
use gatekit::tfevents::masked_crc32c;
use gatekit::tfevents::{TfEventsWriter, event_files, frame_record, read_events, read_records};
use gatekit::train::{MetricsLog, Record, format_metric};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const LINEAR: &str = r#"
[run]
model = "MODELS/linear.toml"
steps = 200
batch_size = 10
lr = 0.2
eval_every = 50
full_eval_every = 50
full_eval_at_start = true
dtype = "f64"
[defaults]
kind = "linear"
inputs = 8
outputs = 4
train = 10
test = 100
noise = 0.4
[[task]]
name = "alpha"
[[task]]
name = "beta"
[[task]]
name = "gamma"
"#;

const TASKS: [&str; 3] = ["alpha", "beta", "gamma"];

/// Trains `name` on the linear set in `dir/runs` with extra CLI arguments.
fn train(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let set = write_task_set(dir, "linear.toml", LINEAR);
    train_quiet(dir, &set, name, extra)
}

/// Width and height from a PNG's IHDR chunk, after checking the signature.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR", "first chunk is IHDR");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    let crc = gatekit_crc32(&bytes[12..29]);
    assert_eq!(crc, be(29), "IHDR CRC");
    (be(16), be(20))
}

/// PNG chunks use plain CRC-32 (not CRC-32C): bitwise, for the one check above.
fn gatekit_crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Decodes a PNG and returns (distinct colours, share of non-white pixels).
fn png_pixels(bytes: &[u8]) -> (usize, f64) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("PNG header decodes");
    let mut buf = vec![0; reader.output_buffer_size().expect("image fits in memory")];
    let info = reader.next_frame(&mut buf).expect("PNG pixels decode");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let px: Vec<[u8; 3]> = buf[..info.buffer_size()]
        .chunks_exact(3)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    let distinct = px.iter().collect::<BTreeSet<_>>().len();
    let ink = px.iter().filter(|p| **p != [255, 255, 255]).count();
    (distinct, ink as f64 / px.len() as f64)
}

/// Checks that SVG text is well formed (every tag closed in order) and counts its elements.
fn svg_elements(svg: &str) -> BTreeMap<String, usize> {
    assert!(svg.trim_start().starts_with("<svg"), "starts with <svg");
    let mut stack: Vec<String> = Vec::new();
    let mut counts = BTreeMap::new();
    let mut rest = svg;
    while let Some(i) = rest.find('<') {
        let end = rest[i..].find('>').expect("tag closes") + i;
        let tag = &rest[i + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(
                stack.pop().as_deref(),
                Some(name.trim()),
                "mismatched </{name}>"
            );
            continue;
        }
        let name: String = tag
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '/')
            .collect();
        *counts.entry(name.clone()).or_insert(0) += 1;
        if !tag.ends_with('/') {
            stack.push(name);
        }
    }
    assert!(stack.is_empty(), "unclosed tags: {stack:?}");
    counts
}

/// Checks one figure's PNG and SVG: they exist, decode, are as large as drawn, show more than
/// one colour, and the SVG names every string in `names`.
fn check_figure(dir: &Path, stem: &str, names: &[&str]) {
    let png = std::fs::read(dir.join(format!("{stem}.png")))
        .unwrap_or_else(|e| panic!("{stem}.png: {e}"));
    let (w, h) = png_size(&png);
    assert!(w >= 600 && h >= 250, "{stem}: {w}x{h} is too small to read");
    let (colours, ink) = png_pixels(&png);
    assert!(colours >= 10, "{stem}: only {colours} colours");
    assert!(
        (0.01..0.97).contains(&ink),
        "{stem}: {:.1}% non-white pixels",
        100.0 * ink
    );
    let svg = std::fs::read_to_string(dir.join(format!("{stem}.svg"))).unwrap();
    let counts = svg_elements(&svg);
    assert!(
        svg.contains(&format!("width=\"{w}\"")) && svg.contains(&format!("height=\"{h}\"")),
        "{stem}: SVG and PNG sizes differ"
    );
    let drawn: usize = ["rect", "polyline", "path", "circle", "line", "polygon"]
        .iter()
        .map(|k| counts.get(*k).copied().unwrap_or(0))
        .sum();
    assert!(drawn >= 20, "{stem}: only {drawn} shapes: {counts:?}");
    assert!(
        counts.get("text").copied().unwrap_or(0) >= 5,
        "{stem}: titles and labels missing"
    );
    for n in names {
        assert!(svg.contains(n), "{stem}.svg does not name `{n}`");
    }
}

/// The last step's test metric of `strategy` on `task`.
fn last_metric(records: &[Record], strategy: &str, task: &str) -> f64 {
    records
        .iter()
        .rev()
        .find_map(|r| match r {
            Record::Eval {
                strategy: s,
                task: t,
                split,
                metric,
                ..
            } if s == strategy && t == task && split == "test" => Some(*metric),
            _ => None,
        })
        .unwrap()
}

#[test]
fn crc32c_matches_known_vectors() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
    assert_eq!(crc32c(&(0u8..32).collect::<Vec<_>>()), 0x46DD_794E);
    // Golden values from TensorBoard's own writer (`tensorboard.summary.writer.record_writer`).
    assert_eq!(masked_crc32c(b"123456789"), 0xC78A_B0E5);
    let hello: Vec<u8> = (0..21)
        .map(|i| {
            u8::from_str_radix(
                &"0500000000000000eab2043e68656c6c6fbb1f1c19"[2 * i..2 * i + 2],
                16,
            )
            .unwrap()
        })
        .collect();
    assert_eq!(frame_record(b"hello"), hello);
    let crc = crc32c(b"123456789");
    assert_eq!(
        masked_crc32c(b"123456789"),
        crc.rotate_right(15).wrapping_add(0xa282_ead8)
    );
}

#[test]
fn tfrecord_events_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = TfEventsWriter::create(tmp.path()).unwrap();
    w.add_scalar("a/b", 3, 0.25).unwrap();
    w.add_scalar("zero", 4, 0.0).unwrap();
    w.add_histogram("h", 5, -1.0, 1.0, &[1, 0, 3, 4]).unwrap();
    let path = w.finish().unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    assert_eq!(event_files(tmp.path()), vec![path.clone()]);

    let bytes = std::fs::read(&path).unwrap();
    let records = read_records(&bytes, &path).unwrap();
    assert_eq!(records.len(), 4, "file_version + 3 events");
    // Framing by hand: length, masked CRC of the length, data, masked CRC of the data.
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(len, records[0].len());
    assert_eq!(
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
        masked_crc32c(&bytes[..8])
    );
    assert_eq!(
        u32::from_le_bytes(bytes[12 + len..16 + len].try_into().unwrap()),
        masked_crc32c(&bytes[12..12 + len])
    );
    assert_eq!(
        frame_record(&records[1]),
        bytes[16 + len..16 + len + 16 + records[1].len()]
    );

    let events = read_events(&path).unwrap();
    assert_eq!(events[0].file_version, "brain.Event:2");
    let v = &events[1].summary.as_ref().unwrap().value[0];
    assert_eq!(
        (events[1].step, v.tag.as_str(), v.simple_value),
        (3, "a/b", Some(0.25))
    );
    let zero = &events[2].summary.as_ref().unwrap().value[0];
    assert_eq!(
        zero.simple_value,
        Some(0.0),
        "a zero scalar is still present"
    );
    let h = events[3].summary.as_ref().unwrap().value[0]
        .histo
        .clone()
        .unwrap();
    assert_eq!(h.bucket, vec![1.0, 0.0, 3.0, 4.0]);
    assert_eq!(h.bucket_limit, vec![-0.5, 0.0, 0.5, 1.0]);
    assert_eq!((h.min, h.max, h.num), (-1.0, 1.0, 8.0));
    // Bin centres -0.75, 0.25, 0.75: sum 1·-0.75 + 3·0.25 + 4·0.75.
    assert!((h.sum - 3.0).abs() < 1e-12, "{}", h.sum);

    let mut corrupt = bytes.clone();
    corrupt[20] ^= 0x40;
    assert!(
        read_records(&corrupt, &path).is_err(),
        "data CRC catches a flipped bit"
    );
    assert!(read_records(&bytes[..bytes.len() - 2], &path).is_err());
}

#[test]
fn report_on_a_linear_run_writes_every_figure_with_the_runs_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let run = train(tmp.path(), "lin", &["--strategy", "all"]);
    // Default run: the latest under runs/, output in reports/<run name> (never inside the run).
    let out = gtk(tmp.path(), &["report"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("report.html"), "{stdout}");
    let dir = tmp.path().join("reports/lin");
    assert!(!run.join("report").exists());
    let stems = [
        ("fig1_test_metric", &TASKS[..]),
        ("fig1_test_loss", &TASKS[..]),
        ("fig2_weight_histograms", &["fc1.weight"][..]),
        ("fig3_mask_distributions", &TASKS[..]),
        ("fig5_masks_fc1_weight", &TASKS[..]),
        ("fig5_task_similarity", &TASKS[..]),
    ];
    for (stem, names) in stems {
        check_figure(&dir, stem, names);
    }
    // Figure 2's legend lists the steps drawn; the gated model has no step-0 snapshot, and
    // the subtitle says so.
    let fig2 = std::fs::read_to_string(dir.join("fig2_weight_histograms.svg")).unwrap();
    assert!(
        fig2.contains("\nstep 0\n</text>") && fig2.contains("gated: no data at step 0"),
        "fig2 legend"
    );
    for (stem, names) in stems {
        for s in ["gated", "shared", "separate"] {
            if stem.starts_with("fig1") || stem.starts_with("fig2") {
                let svg = std::fs::read_to_string(dir.join(format!("{stem}.svg"))).unwrap();
                assert!(svg.contains(s), "{stem} does not show {s} ({names:?})");
            }
        }
    }
    // Strategy colours are fixed: gated blue, shared orange, separate green.
    let fig1 = std::fs::read_to_string(dir.join("fig1_test_metric.svg")).unwrap();
    for colour in ["#1F77B4", "#FF7F0E", "#2CA02C"] {
        assert!(
            fig1.to_uppercase().contains(colour),
            "strategy colour {colour} missing"
        );
    }

    // The table holds the last evaluation's numbers, the best strategy per task in bold.
    let records = MetricsLog::read_committed(&run).unwrap();
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for task in TASKS {
        let row = md
            .lines()
            .find(|l| l.starts_with(&format!("| {task} |")))
            .unwrap_or_else(|| panic!("no row for {task}:\n{md}"));
        let values: Vec<f64> = ["gated", "shared", "separate"]
            .iter()
            .map(|s| last_metric(&records, s, task))
            .collect();
        let best = values.iter().copied().fold(f64::INFINITY, f64::min);
        for v in &values {
            let cell = format_metric(*v);
            if *v == best {
                assert!(
                    row.contains(&format!("**{cell}**")),
                    "best {cell} not bold: {row}"
                );
            } else {
                assert!(
                    row.contains(&format!("| {cell} |")),
                    "{cell} missing: {row}"
                );
            }
        }
    }
    assert!(md.contains("fc1.weight") && md.contains("gated, binarized"));

    // The heatmap's numbers are the share of identical mask bits in the checkpoint.
    let data = RunData::open(&run).unwrap();
    let masks: &BinaryMasks = data.masks.as_ref().expect("gated masks");
    assert_eq!(masks.tasks, TASKS);
    let s = masks.similarity(&[]);
    let on =
        |t: usize| -> Vec<bool> { masks.layers.iter().flat_map(|l| l.on[t].clone()).collect() };
    let (a, b) = (on(0), on(2));
    let same = a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64;
    assert_eq!(s[0][2], same);
    let heat = std::fs::read_to_string(dir.join("fig5_task_similarity.svg")).unwrap();
    assert!(
        heat.contains(&format!("\n{same:.2}\n</text>")),
        "{same:.2} not in the heatmap"
    );

    // report.html is self-contained: every figure embedded, every SVG linked.
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    for (stem, _) in stems {
        assert!(
            html.contains(&format!("data-file=\"{stem}.png\"")),
            "{stem} not embedded"
        );
        assert!(html.contains(&format!("href=\"{stem}.svg\"")));
        assert!(md.contains(&format!("]({stem}.png)")));
    }
    assert_eq!(
        html.matches("src=\"data:image/png;base64,").count(),
        stems.len()
    );
    assert!(html.contains("<td class=\"best\">"));

    // TensorBoard events were written while training: one run (folder) per strategy with the
    // same tags, so strategies overlay in one chart; tags, steps and values are the log's.
    let tb_root = run.join("tb");
    let mut runs: Vec<String> = std::fs::read_dir(&tb_root)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    runs.sort();
    assert_eq!(runs, ["gated", "gated-binarized", "separate", "shared"]);
    let mut tb = event_files(&tb_root);
    for r in &runs {
        tb.extend(event_files(&tb_root.join(r)));
    }
    assert_eq!(tb.len(), 5, "{tb:?}");
    let read = |dir: &Path| {
        let mut scalars: BTreeMap<String, Vec<(i64, f32)>> = BTreeMap::new();
        let mut histograms = BTreeSet::new();
        let mut hparams = Vec::new();
        for file in event_files(dir) {
            for e in read_events(&file).unwrap() {
                for v in e.summary.iter().flat_map(|s| &s.value) {
                    if let Some(x) = v.simple_value {
                        scalars.entry(v.tag.clone()).or_default().push((e.step, x));
                    }
                    if v.histo.is_some() {
                        histograms.insert(v.tag.clone());
                    }
                    if let Some(d) = gatekit::tfevents::hparams::decode(v) {
                        hparams.push(d);
                    }
                }
            }
        }
        (scalars, histograms, hparams)
    };
    let eval_steps: BTreeSet<usize> = records
        .iter()
        .filter(|r| matches!(r, Record::Eval { .. }))
        .map(Record::step)
        .collect();
    assert_eq!(eval_steps.len(), 5, "steps 0, 50, 100, 150, 200");
    use gatekit::tfevents::hparams::{Data, Kind};
    for s in ["gated", "shared", "separate"] {
        let (scalars, _, hparams) = read(&tb_root.join(s));
        for t in TASKS {
            for split in ["test", "train"] {
                for q in ["mse", "loss"] {
                    let tag = format!("{split}/{t}/{q}");
                    let series = scalars.get(&tag).unwrap_or_else(|| panic!("no {s} {tag}"));
                    assert_eq!(series.len(), eval_steps.len(), "{tag}");
                }
            }
            // Probes have their own tags, one point per probe (steps 0, 50, ..., 200 here too).
            let tag = format!("probe_test/{t}/mse");
            let series = scalars.get(&tag).unwrap_or_else(|| panic!("no {tag}"));
            let steps: Vec<i64> = series.iter().map(|p| p.0).collect();
            assert_eq!(steps, vec![0, 50, 100, 150, 200], "{tag}");
        }
        // The mean over tasks, at every evaluation.
        let (step, mean) = *scalars["test_mean/mse"].last().unwrap();
        assert_eq!(step, 200);
        let want = TASKS
            .iter()
            .map(|t| last_metric(&records, s, t))
            .sum::<f64>()
            / 3.0;
        assert!(
            (f64::from(mean) - want).abs() < 1e-6 * want.max(1.0),
            "{mean} {want}"
        );
        // The run names its strategy and settings for the hparams plugin.
        assert_eq!(hparams.len(), 1, "{s}");
        let Some(Data::SessionStartInfo(info)) = &hparams[0].data else {
            panic!("{:?}", hparams[0])
        };
        assert_eq!(
            info.hparams["strategy"].kind,
            Some(Kind::StringValue(s.into()))
        );
        assert!(matches!(
            info.hparams["lr"].kind,
            Some(Kind::NumberValue(v)) if v > 0.0
        ));
    }
    let (gated, histograms, _) = read(&tb_root.join("gated"));
    let (step, value) = *gated["test/beta/mse"].last().unwrap();
    assert_eq!(step, 200);
    assert_eq!(value, last_metric(&records, "gated", "beta") as f32);
    assert!(gated.contains_key("mask_off/alpha/fc1.weight"));
    assert!(histograms.contains("effective/alpha/fc1.weight"));
    assert!(histograms.contains("gate/alpha/fc1.weight"));
    let (binarized, _, _) = read(&tb_root.join("gated-binarized"));
    assert!(binarized.contains_key("test/gamma/mse"));
    assert!(binarized.contains_key("test_mean/mse"));
    let (_, shared_histograms, _) = read(&tb_root.join("shared"));
    assert!(shared_histograms.contains("effective/all/fc1.weight"));
    let (_, _, experiment) = read(&tb_root);
    let Some(Data::Experiment(exp)) = &experiment[0].data else {
        panic!("{experiment:?}")
    };
    let metrics: Vec<&str> = exp
        .metric_infos
        .iter()
        .filter_map(|m| m.name.as_ref().map(|n| n.tag.as_str()))
        .collect();
    assert!(metrics.contains(&"test_mean/mse"), "{metrics:?}");
    assert!(exp.hparam_infos.iter().any(|h| h.name == "strategy"));

    // A second report keeps the run's event file (no duplicate points). Without --out it goes
    // to the next free default folder (reports/lin-2) rather than refusing over a folder the
    // user never named; the same --out needs --force, which replaces the earlier report.
    let again = gtk(tmp.path(), &["report", run.to_str().unwrap()]);
    assert!(again.status.success(), "{:?}", text(&again));
    assert!(tmp.path().join("reports/lin-2/report.md").is_file());
    let again = gtk(
        tmp.path(),
        &["report", run.to_str().unwrap(), "--out", "reports/lin"],
    );
    assert_clean_error(&again, &["reports/lin", "not empty", "--force"]);
    let again = gtk(
        tmp.path(),
        &[
            "report",
            run.to_str().unwrap(),
            "--out",
            "reports/lin",
            "--force",
        ],
    );
    assert!(again.status.success(), "{:?}", text(&again));
    let mut files = event_files(&tb_root);
    for r in &runs {
        files.extend(event_files(&tb_root.join(r)));
    }
    assert_eq!(files, tb);
}

#[test]
fn several_runs_are_compared_side_by_side() {
    let tmp = tempfile::tempdir().unwrap();
    let a = train(tmp.path(), "seed0", &["--seed", "0"]);
    let b = train(tmp.path(), "seed7", &["--seed", "7"]);
    let out = gtk(
        tmp.path(),
        &[
            "report",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--out",
            "cmp",
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    // TensorBoard 2.x reads a comma-separated --logdir as one folder: name each run instead.
    let (stdout, _) = text(&out);
    let view = format!(
        "view with: tensorboard --logdir_spec seed0:{},seed7:{}\n",
        a.join("tb").display(),
        b.join("tb").display()
    );
    assert!(stdout.contains(&view), "{stdout}");
    let dir = tmp.path().join("cmp");
    check_figure(&dir, "fig4_runs", &["seed0", "seed7", "seed=0", "seed=7"]);
    for run in ["seed0", "seed7"] {
        check_figure(&dir, &format!("{run}-fig1_test_metric"), &TASKS);
        assert!(!event_files(&tmp.path().join("runs").join(run).join("tb")).is_empty());
    }
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains("## Runs side by side") && md.contains("| seed0 | 0 |"),
        "{md}"
    );
    assert!(md.contains("## Run seed0") && md.contains("## Run seed7"));
}

/// Issue 24: runs whose full evaluation happens only at the end drew one dot per run in
/// Figure 4. The curves come from every probe (every `eval_every` steps) and the full
/// evaluations are dots on them; checked through the data the figure draws.
#[test]
fn runs_side_by_side_are_curves_from_every_probe() {
    let tmp = tempfile::tempdir().unwrap();
    let body = LINEAR
        .replace("full_eval_every = 50\n", "")
        .replace("full_eval_at_start = true\n", "");
    let set = write_task_set(tmp.path(), "probes.toml", &body);
    let all = ["--strategy", "all"];
    let a = train_quiet(
        tmp.path(),
        &set,
        "p0",
        &[&all[..], &["--seed", "0"]].concat(),
    );
    let b = train_quiet(
        tmp.path(),
        &set,
        "p1",
        &[&all[..], &["--seed", "1"]].concat(),
    );
    let runs = [RunData::open(&a).unwrap(), RunData::open(&b).unwrap()];
    let panels = gatekit::report::figures::runs_comparison_panels(&runs);
    let metric: Vec<_> = panels.iter().filter(|p| !p.masks).collect();
    assert_eq!(metric.len(), 3, "gated, shared, separate");
    for p in &metric {
        assert_eq!(p.lines.len(), 2, "{}", p.title);
        for l in &p.lines {
            let steps: Vec<f64> = l.curve.iter().map(|q| q.0).collect();
            // Probes at 0 (before the first step), 50, 100, 150 and 200.
            assert_eq!(
                steps,
                vec![0.0, 50.0, 100.0, 150.0, 200.0],
                "{}: {}",
                p.title,
                l.label
            );
            assert!(l.curve.iter().all(|q| q.1.is_finite() && q.1 >= 0.0));
            // The one full evaluation, at the end, is a dot.
            assert_eq!(l.full.len(), 1, "{}", p.title);
            assert_eq!(l.full[0].0, 200.0);
        }
    }
    // The mean over tasks of gated's probes is the mean of its three tasks' probe records.
    let r = &runs[0];
    let by_hand: f64 = TASKS
        .iter()
        .map(|t| r.probe_series("gated", t, "test", gatekit::report::Quantity::Metric)[1].1)
        .sum::<f64>()
        / 3.0;
    assert!((metric[0].lines[0].curve[1].1 - by_hand).abs() < 1e-12);
    let out = gtk(
        tmp.path(),
        &[
            "report",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--out",
            "cmp",
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    check_figure(&tmp.path().join("cmp"), "fig4_runs", &["p0", "p1"]);
}

/// A regression run next to a classification run would put accuracies on an MSE axis: the
/// report refuses, naming both runs and their metrics.
#[test]
fn runs_of_different_metrics_are_not_mixed() {
    let tmp = tempfile::tempdir().unwrap();
    let a = train(tmp.path(), "reg", &[]);
    // A classification run without MNIST: the same run with its records relabelled.
    let b = tmp.path().join("runs/cls");
    std::fs::create_dir_all(&b).unwrap();
    for f in std::fs::read_dir(&a).unwrap() {
        let f = f.unwrap().path();
        if f.is_file() {
            std::fs::copy(&f, b.join(f.file_name().unwrap())).unwrap();
        }
    }
    let metrics = std::fs::read_to_string(b.join("metrics.jsonl")).unwrap();
    let relabelled = metrics.replace("\"metric_name\":\"mse\"", "\"metric_name\":\"accuracy\"");
    assert_ne!(relabelled, metrics);
    std::fs::write(b.join("metrics.jsonl"), &relabelled).unwrap();
    // The commit records the log's length: relabelled as a tool rewriting both would.
    let state = std::fs::read_to_string(b.join("state.json")).unwrap();
    let mut state: serde_json::Value = serde_json::from_str(&state).unwrap();
    state["metrics_bytes"] = relabelled.len().into();
    std::fs::write(b.join("state.json"), state.to_string()).unwrap();
    let out = gtk(
        tmp.path(),
        &["report", "runs/reg", "runs/cls", "--out", "mixed"],
    );
    assert_clean_error(
        &out,
        &[
            "runs/cls",
            "measures accuracy",
            "runs/reg measures mse",
            "separately",
        ],
    );
    assert!(!tmp.path().join("mixed").exists());
    // One metric: fine.
    let out = gtk(tmp.path(), &["report", "runs/cls", "--out", "cls"]);
    assert!(out.status.success(), "{:?}", text(&out));
}

#[test]
fn report_on_colored_mnist_pictures_conv_and_fc_masks() {
    let Some(data) = shared_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let set = write_task_set(
        tmp.path(),
        "colors.toml",
        r#"
[run]
model = "MODELS/lenet5.toml"
steps = 6
batch_size = 16
optimizer = "momentum"
lr = 0.01
eval_every = 3
eval_train_limit = 100
[defaults]
kind = "mnist"
test_limit = 200
[[task]]
name = "black"
background = [0.0, 0.0, 0.0]
[[task]]
name = "red"
background = [1.0, 0.0, 0.0]
"#,
    );
    let out = gtk(
        tmp.path(),
        &[
            "train",
            "--task-set",
            set.to_str().unwrap(),
            "--strategy",
            "all",
            "--name",
            "c",
            "--data-dir",
            data.to_str().unwrap(),
            "--quiet",
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    // No dataset needed for the report (gtk() clears GATEKIT_DATA).
    let out = gtk(tmp.path(), &["report", "runs/c", "--out", "rep"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let dir = tmp.path().join("rep");
    let names = ["black", "red"];
    for stem in [
        "fig1_test_metric",
        "fig3_mask_distributions",
        "fig5_masks_conv1_weight",
        "fig5_masks_conv2_weight",
        "fig5_masks_fc1_weight",
        "fig5_masks_fc2_weight",
        "fig5_masks_fc3_weight",
        "fig5_task_similarity",
    ] {
        check_figure(&dir, stem, &names);
    }
    check_figure(
        &dir,
        "fig2_weight_histograms",
        &["conv1.weight", "fc3.weight"],
    );
    let conv1 = std::fs::read_to_string(dir.join("fig5_masks_conv1_weight.svg")).unwrap();
    assert!(conv1.contains("6 output filters") && conv1.contains("\nR\n</text>"));
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("test accuracy (step 6)"), "{md}");
}

#[test]
fn report_errors_are_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let out = gtk(tmp.path(), &["report"]);
    assert_clean_error(&out, &["runs", "gtk train"]);
    std::fs::create_dir_all(tmp.path().join("notarun")).unwrap();
    let out = gtk(tmp.path(), &["report", "notarun"]);
    assert_clean_error(&out, &["notarun/state.json", "folder is empty"]);
    std::fs::write(tmp.path().join("notarun/notes.txt"), "x").unwrap();
    let out = gtk(tmp.path(), &["report", "notarun"]);
    assert_clean_error(&out, &["notarun/state.json", "not a gatekit run folder"]);
    let out = gtk(tmp.path(), &["report", "missing"]);
    assert_clean_error(&out, &["missing", "no such run folder"]);
}

/// Figure 2's data: without periodic full evaluations the run still keeps weight histograms at
/// a few probes, so the figure shows several steps, on one x-range per layer shared by every
/// strategy's panel and step.
#[test]
fn weight_histograms_show_several_steps_on_one_axis_per_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let text = LINEAR
        .replace("full_eval_every = 50\n", "")
        .replace("full_eval_at_start = true\n", "");
    let set = write_task_set(tmp.path(), "linear.toml", &text);
    let run = train_quiet(tmp.path(), &set, "h", &["--strategy", "all"]);
    let data = RunData::open(&run).unwrap();
    let (steps, rows) = gatekit::report::figures::weight_histogram_rows(&data);
    // Probes at 50, 100, 150 (a quarter of 200 steps each) and the full evaluation at 200.
    assert_eq!(steps, [50, 100, 150, 200]);
    assert_eq!(rows.len(), 1, "the linear model has one weight");
    let row = &rows[0];
    assert_eq!(row.param, "fc1.weight");
    let names: Vec<&str> = row.strategies.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names, ["gated", "shared", "separate"]);
    // The shared range covers every snapshot of every strategy, and no more.
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut total: BTreeMap<(String, usize), u64> = BTreeMap::new();
    for r in &data.records {
        if let Record::Histogram {
            step,
            strategy,
            param,
            of,
            lo: a,
            hi: b,
            counts,
            ..
        } = r
            && of == "effective"
            && param == "fc1.weight"
        {
            lo = lo.min(*a);
            hi = hi.max(*b);
            *total.entry((strategy.clone(), *step)).or_default() +=
                counts.iter().map(|&c| u64::from(c)).sum::<u64>();
        }
    }
    assert_eq!((row.lo, row.hi), (lo, hi));
    for (s, series) in &row.strategies {
        let at: Vec<usize> = series.iter().map(|(step, _)| *step).collect();
        assert_eq!(at, [50, 100, 150, 200], "{s}");
        for (step, counts) in series {
            // Re-binning onto the shared range keeps every weight.
            let n: f64 = counts.iter().sum();
            let want = total[&(s.clone(), *step)] as f64;
            assert!(
                (n - want).abs() < 1e-6 * want,
                "{s} step {step}: {n} vs {want}"
            );
        }
        // One bin width per panel: all steps of a strategy have the same number of bins.
        assert!(series.iter().all(|(_, c)| c.len() == series[0].1.len()));
    }
    // The distributions move over training: the gated model's first and last differ.
    let gated = &row.strategies[0].1;
    assert_ne!(gated[0].1, gated[3].1);
}
