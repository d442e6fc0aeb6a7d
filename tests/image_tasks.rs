//! Image task kinds on the real MNIST: pixel formulas of each transform, one shared copy of the
//! dataset for every task, and the paper's colored-MNIST claim after 500 steps.

mod common;
use candle_core::{DType, Device, IndexOp};
use gatekit::TaskSet;
use gatekit::params::TaskId;
use gatekit::task::Split;
use gatekit::train::{Record, Strategy, Trainer, mean_test_metric};

fn set(body: &str) -> TaskSet {
    set_for("lenet5.toml", body)
}

fn set_for(model: &str, body: &str) -> TaskSet {
    let text = format!(
        "[run]\nmodel = \"{}/{model}\"\nsteps = 10\n{body}",
        common::repo("models").display()
    );
    TaskSet::parse_with(&text, std::path::Path::new("test.toml"), &|m: &str| {
        gatekit::ModelSpec::load(std::path::Path::new(m))
    })
    .unwrap()
}

fn pixels(set: &TaskSet, task: usize, example: usize) -> Vec<Vec<Vec<f32>>> {
    let data = common::shared_data().unwrap();
    let tasks = set.build_tasks(Some(&data)).unwrap();
    let b = tasks[task]
        .batch(Split::Test, &[example], &Device::Cpu, DType::F32)
        .unwrap();
    b.x.i(0).unwrap().to_vec3::<f32>().unwrap()
}

#[test]
fn colour_transforms_follow_their_formulas() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let s = set("[defaults]\nkind = \"mnist\"\n\
         [[task]]\nname = \"red\"\nbackground = [1.0, 0.0, 0.0]\n\
         [[task]]\nname = \"inv\"\ninverted = true\ndigit = [0.0, 0.5, 1.0]\n\
         [[task]]\nname = \"white\"\nfill = [1.0, 1.0, 1.0]\n\
         [[task]]\nname = \"black\"\n");
    let gatekit_data = gatekit::data::load_mnist(&data.join("mnist")).unwrap();
    let raw = gatekit_data.test.image(0);
    // Pixel (r, c) of the 28x28 digit sits at (r + 2, c + 2) after padding.
    let (r, c) = (0..784)
        .map(|i| (i / 28, i % 28))
        .max_by_key(|&(r, c)| raw[r * 28 + c])
        .unwrap();
    let x = f32::from(raw[r * 28 + c]) / 255.0;
    let red = pixels(&s, 0, 0);
    assert_eq!(
        (red[0][0][0], red[1][0][0], red[2][0][0]),
        (1.0, 0.0, 0.0),
        "padding takes the background"
    );
    for (k, bg) in [1.0f32, 0.0, 0.0].iter().enumerate() {
        assert!((red[k][r + 2][c + 2] - (x + (1.0 - x) * bg)).abs() < 1e-6);
    }
    let inv = pixels(&s, 1, 0);
    for (k, digit) in [0.0f32, 0.5, 1.0].iter().enumerate() {
        assert_eq!(inv[k][0][0], 1.0, "inverted background is white");
        assert!((inv[k][r + 2][c + 2] - (x * digit + (1.0 - x))).abs() < 1e-6);
    }
    let white = pixels(&s, 2, 0);
    assert!(white.iter().flatten().flatten().all(|&v| v == 1.0));
    let black = pixels(&s, 3, 0);
    assert_eq!(black.len(), 3);
    assert!((black[1][r + 2][c + 2] - x).abs() < 1e-6 && black[0][0][0] == 0.0);
}

#[test]
fn permuted_rotated_and_split_tasks() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let s = set_for(
        "mlp-mnist.toml",
        "[defaults]\nchannels = 1\npad = 0\n\
         [[task]]\nname = \"id\"\nkind = \"mnist\"\n\
         [[task]]\nname = \"p\"\nkind = \"permuted-mnist\"\npermutation = 3\n\
         [[task]]\nname = \"r\"\nkind = \"rotated-mnist\"\nangle = 90.0\n\
         [[task]]\nname = \"s\"\nkind = \"split-mnist\"\nclasses = [3, 7]\n",
    );
    let tasks = s.build_tasks(Some(&data)).unwrap();
    let batch = |t: usize, i: usize| {
        tasks[t]
            .batch(Split::Train, &[i], &Device::Cpu, DType::F32)
            .unwrap()
            .x
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let (id, p) = (batch(0, 5), batch(1, 5));
    let perm = gatekit::task::permutation(s.run.seed, 3, 784);
    for (i, &j) in perm.iter().enumerate() {
        assert_eq!(p[i], id[j as usize]);
    }
    // A quarter turn keeps the ink and moves it.
    let rot = batch(2, 5);
    let ink = |v: &[f32]| v.iter().sum::<f32>();
    assert!(
        (ink(&rot) - ink(&id)).abs() / ink(&id) < 0.02,
        "{} vs {}",
        ink(&rot),
        ink(&id)
    );
    assert_ne!(rot, id);
    let split = &tasks[3];
    let labels = split
        .batch(
            Split::Test,
            &(0..split.len(Split::Test)).collect::<Vec<_>>(),
            &Device::Cpu,
            DType::F32,
        )
        .unwrap()
        .y;
    let labels = labels.to_vec1::<u32>().unwrap();
    assert_eq!(labels.len(), 1010 + 1028, "test digits 3 and 7");
    assert!(labels.iter().all(|&l| l == 3 || l == 7));
}

/// `normalize = [mean, std]` maps every value v (digit, background and padding) to
/// (v − mean) / std, as torchvision's `Normalize` does after `ToTensor` (SupSup's permuted MNIST);
/// a malformed value is refused with the field named.
#[test]
fn normalize_standardises_every_value() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let plain = set("[defaults]\nkind = \"permuted-mnist\"\n[[task]]\nname = \"p\"\n");
    let norm = set(
        "[defaults]\nkind = \"permuted-mnist\"\nnormalize = [0.1307, 0.3081]\n\
         [[task]]\nname = \"p\"\n",
    );
    let (a, b) = (pixels(&plain, 0, 7), pixels(&norm, 0, 7));
    let (a, b): (Vec<f32>, Vec<f32>) = (
        a.into_iter().flatten().flatten().collect(),
        b.into_iter().flatten().flatten().collect(),
    );
    assert_eq!(a.len(), 3 * 32 * 32);
    for (x, y) in a.iter().zip(&b) {
        assert!((y - (x - 0.1307) / 0.3081).abs() < 1e-6, "{x} -> {y}");
    }
    assert!(
        (b[0] + 0.1307 / 0.3081).abs() < 1e-6,
        "padding is normalized too"
    );
    for bad in ["[0.5]", "[0.1, 0.0]", "[0.1, -1.0]", "[0.1, 0.2, 0.3]"] {
        let text = format!(
            "[run]\nmodel = \"{}/lenet5.toml\"\nsteps = 10\n[defaults]\nkind = \"permuted-mnist\"\n\
             normalize = {bad}\n[[task]]\nname = \"p\"\n",
            common::repo("models").display()
        );
        let err = TaskSet::parse_with(&text, std::path::Path::new("test.toml"), &|m: &str| {
            gatekit::ModelSpec::load(std::path::Path::new(m))
        })
        .and_then(|s| s.build_tasks(Some(&data)).map(|_| ()))
        .expect_err(bad)
        .to_string();
        assert!(
            err.contains("normalize") && err.contains("[mean, std]"),
            "{bad}: {err}"
        );
    }
}

/// `permute_padding = true` permutes the padded 32x32 plane, padding included (van de Ven &
/// Tolias's reference code), where the default permutes the 28x28 digit and pads after.
#[test]
fn permute_padding_permutes_the_padded_plane() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let s = set_for(
        "mlp-1000x2-10.toml",
        "[defaults]\nchannels = 1\npad = 2\n\
         [[task]]\nname = \"id\"\nkind = \"mnist\"\n\
         [[task]]\nname = \"pp\"\nkind = \"permuted-mnist\"\npermutation = 4\npermute_padding = true\n\
         [[task]]\nname = \"p\"\nkind = \"permuted-mnist\"\npermutation = 4\n",
    );
    let tasks = s.build_tasks(Some(&data)).unwrap();
    let batch = |t: usize| {
        tasks[t]
            .batch(Split::Train, &[11], &Device::Cpu, DType::F32)
            .unwrap()
            .x
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let (id, pp, p) = (batch(0), batch(1), batch(2));
    assert_eq!((id.len(), pp.len()), (1024, 1024));
    let perm = gatekit::task::permutation(s.run.seed, 4, 1024);
    for (i, &j) in perm.iter().enumerate() {
        assert_eq!(pp[i], id[j as usize]);
    }
    // The default keeps the border at 0; the padded permutation scatters it.
    let border = |v: &[f32]| {
        (0..1024)
            .filter(|&i| i / 32 < 2 || i / 32 >= 30 || i % 32 < 2 || i % 32 >= 30)
            .map(|i| v[i])
            .sum::<f32>()
    };
    assert_eq!(border(&p), 0.0);
    assert!(border(&pp) > 1.0, "{}", border(&pp));
}

/// The paper's colored MNIST (black, red, green, blue), 500 steps of batch 32, LeNet-5: gated
/// matches the best baseline. Peer (PyTorch, paper's recipe): gated 0.877, shared 0.953,
/// separate 0.906; with gatekit's default mask recipe gated reaches shared.
#[test]
fn colored_mnist_gated_matches_shared_and_beats_separate() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let mut set = TaskSet::load(&common::repo("tasks/colors.toml")).unwrap();
    set.run.evaluation.eval_every = set.run.steps;
    set.run.evaluation.eval_train_limit = 500;
    let tmp = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::create(
        set,
        &Strategy::ALL,
        &tmp.path().join("run"),
        Some(&data),
        &Device::Cpu,
    )
    .unwrap();
    trainer.train(None, &mut |_| {}).unwrap();
    let records = trainer.evaluate().unwrap();
    let mean = |strategy: &str| mean_test_metric(&records, strategy);
    let (gated, shared, separate) = (mean("gated"), mean("shared"), mean("separate"));
    assert!(gated >= separate, "gated {gated} separate {separate}");
    assert!(gated >= shared - 0.01, "gated {gated} shared {shared}");
    let binary: Vec<f64> = records
        .iter()
        .filter_map(|r| {
            if let Record::Binarized { metric, .. } = r {
                Some(*metric)
            } else {
                None
            }
        })
        .collect();
    let binary = binary.iter().sum::<f64>() / binary.len() as f64;
    // Measured: 0.9465 -> 0.9365 (a gap of 0.0100) on 2026-11-27, below 0.01 on the machine
    // of an earlier run with the same code (training is not bit-identical across machines).
    assert!(
        gated - binary < 0.015,
        "binarization gap {gated} -> {binary}"
    );
    // Share of weights off per gated layer (weight and bias together), mean over tasks.
    let learner = &trainer.learners()[0];
    let sizes: std::collections::HashMap<String, usize> = learner
        .network(TaskId(0))
        .unwrap()
        .params()
        .iter()
        .map(|(n, v)| (n.clone(), v.elem_count()))
        .collect();
    let mut per_layer: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    for r in &records {
        if let Record::Mask { param, off, .. } = r {
            let layer = param.rsplit_once('.').unwrap().0.to_string();
            let e = per_layer.entry(layer).or_default();
            e.0 += off * sizes[param] as f64;
            e.1 += sizes[param] as f64;
        }
    }
    assert_eq!(per_layer.len(), 5);
    for (layer, (off, n)) in per_layer {
        assert!(
            off / n >= 0.05,
            "{layer}: only {:.3} of weights off",
            off / n
        );
    }
}
