//! `gtk serve`: the model store answers exactly what the exported per-task ONNX files answer
//! (gatekit's interpreter, within 1e-5) for MLP, LeNet-5 and LeNet-5 with batch norm; a real
//! server on a free port answers the HTTP API (JSON and .npy, both predict routes, tasks,
//! metrics), refuses bad requests with the right status and a message, survives a few thousand
//! malformed bodies, checks the bearer token, adds and removes tasks, and shuts down on SIGTERM.

mod common;
use candle_core::{Device, Tensor};
use common::{flat, max_diff};
use gatekit::TaskSet;
use gatekit::export::check::{OnnxSession, Runtime};
use gatekit::export::{ExportOptions, export_run};
use gatekit::serve::{ExportFolder, ModelStore};
use gatekit::train::ChangedData;
use gatekit::train::{Strategy, Trainer};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Two tasks for `model`, trained a few steps (MNIST for the LeNets).
fn task_set(model: &str) -> Option<String> {
    task_set_seeded(model, 0)
}

fn task_set_seeded(model: &str, seed: u64) -> Option<String> {
    let models = common::repo("models").display().to_string();
    match model {
        "mlp.toml" => Some(format!(
            "[run]\nmodel = \"{models}/{model}\"\nsteps = 60\nseed = {seed}\n[defaults]\nkind = \"sinusoid\"\n[[task]]\nname = \"a\"\n[[task]]\nname = \"b\"\n"
        )),
        _ => common::shared_data().map(|_| {
            format!(
                "[run]\nmodel = \"{models}/{model}\"\nsteps = 12\nbatch_size = 16\neval_every = 12\neval_train_limit = 32\n\
                 [defaults]\nkind = \"mnist\"\ntest_limit = 32\n[[task]]\nname = \"a\"\n[[task]]\nname = \"b\"\nbackground = [1.0, 0.0, 0.0]\n"
            )
        }),
    }
}

/// Trains `model` briefly (seed `seed`) into `dir/run`; the trainer and the run folder.
fn train(model: &str, dir: &Path, seed: u64) -> Option<(Trainer, PathBuf)> {
    let text = if seed == 0 {
        task_set(model)?
    } else {
        task_set_seeded(model, seed)?
    };
    let path = dir.join("set.toml");
    std::fs::write(&path, text).unwrap();
    let set = TaskSet::load(&path).unwrap();
    let data = common::shared_data().filter(|_| model != "mlp.toml");
    let run = dir.join("run");
    let mut trainer =
        Trainer::create(set, &[Strategy::Gated], &run, data.as_deref(), &Device::Cpu).unwrap();
    trainer.train(None, &mut |_| {}).unwrap();
    Some((trainer, run))
}

/// Exports `trainer`'s run into `out`, binarized (`--binarize`) or with the trained gate.
fn export_to(trainer: &Trainer, out: &Path, binarize: bool) -> PathBuf {
    export_run(
        trainer,
        out,
        &ExportOptions {
            binarize,
            ..Default::default()
        },
    )
    .unwrap();
    out.to_path_buf()
}

/// Trains `model` briefly and exports it with `--binarize` into `dir/export`.
fn export(model: &str, dir: &Path) -> Option<PathBuf> {
    export_seeded(model, dir, 0)
}

fn export_seeded(model: &str, dir: &Path, seed: u64) -> Option<PathBuf> {
    let (trainer, _) = train(model, dir, seed)?;
    Some(export_to(&trainer, &dir.join("export"), true))
}

fn inputs(shape: &[usize], batch: usize, seed: u64) -> Tensor {
    let n: usize = batch * shape.iter().product::<usize>();
    let mut rng = gatekit::rng::Rng::new(seed);
    let v: Vec<f32> = (0..n).map(|_| rng.uniform_in(-1.0, 1.0) as f32).collect();
    let mut dims = vec![batch];
    dims.extend_from_slice(shape);
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

#[test]
fn store_matches_each_tasks_exported_onnx_for_every_model() {
    let mut checked = Vec::new();
    for model in ["mlp.toml", "lenet5.toml", "lenet5-bn.toml"] {
        let tmp = tempfile::tempdir().unwrap();
        let Some(dir) = export(model, tmp.path()) else {
            continue;
        };
        let folder = ExportFolder::read(&dir).unwrap();
        assert_eq!(folder.gate, "binary");
        let store = ModelStore::new(folder, 1 << 20);
        assert_eq!(store.names(), vec!["a", "b"]);
        for name in ["a", "b"] {
            let task = store.task(name).unwrap();
            assert!(task.density > 0.0 && task.density < 1.0, "{}", task.density);
            let x = inputs(&store.input_shape(), 7, 3);
            let ours = flat(&store.forward(&task, &x).unwrap());
            let mut onnx =
                OnnxSession::open(&dir.join(format!("{name}.onnx")), Runtime::Reference).unwrap();
            let theirs = flat(&onnx.run(&x, None).unwrap());
            let d = max_diff(&ours, &theirs);
            assert!(d <= 1e-5, "{model} task {name}: max |diff| {d}");
            assert!(ours.iter().all(|v| v.is_finite()));
        }
        // The two tasks' masks differ, so their answers do.
        let x = inputs(&store.input_shape(), 4, 9);
        let a = flat(&store.forward(&store.task("a").unwrap(), &x).unwrap());
        let b = flat(&store.forward(&store.task("b").unwrap(), &x).unwrap());
        assert!(max_diff(&a, &b) > 1e-4);
        checked.push(model);
    }
    assert!(checked.contains(&"mlp.toml"));
}

// ---- a real server ----

struct Server {
    child: Child,
    addr: String,
    /// Its stderr, line by line (read on a thread, so waiting for a line can time out).
    log: std::sync::mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The first log line containing `needle`, waiting up to `secs` seconds.
    fn wait_log(&self, needle: &str, secs: u64) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        let mut seen = String::new();
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push_str(&line),
                Err(_) => break,
            }
        }
        panic!("no log line with {needle:?} within {secs} s; got: {seen}");
    }
}

fn start(export: &Path, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gtk"))
        .arg("serve")
        .arg(export)
        .args(["--addr", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gtk serve starts");
    let (tx, log) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut server = Server {
        child,
        addr: String::new(),
        log,
    };
    // Notes (e.g. a run's) may come before the line with the address.
    let line = server.wait_log("http://", 120);
    server.addr = line.rsplit_once("http://").unwrap().1.trim().to_string();
    server
}

/// An HTTP answer: status, head (status line and headers) and body.
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    /// Each example's first output (the MLP answers one value per example).
    fn first_outputs(&self) -> Vec<f32> {
        self.json()["outputs"]
            .as_array()
            .unwrap_or_else(|| panic!("no outputs: {}", self.text()))
            .iter()
            .map(|r| r[0].as_f64().unwrap() as f32)
            .collect()
    }
}

/// What a request carries.
#[derive(Clone, Copy)]
enum Body<'a> {
    Empty,
    Json(&'a [u8]),
    Npy(&'a [u8]),
}

/// A client of one server: its address and the bearer token it sends, if any.
#[derive(Clone, Copy)]
struct Client<'a> {
    addr: &'a str,
    token: Option<&'a str>,
}

impl<'a> Client<'a> {
    fn new(addr: &'a str) -> Self {
        Client { addr, token: None }
    }

    fn with_token(self, token: &'a str) -> Self {
        Client {
            token: Some(token),
            ..self
        }
    }

    /// Every request of these tests: one HTTP/1.1 request on its own connection, with the
    /// token and the body's content type.
    fn send(&self, method: &str, path: &str, body: Body) -> Reply {
        let (content_type, bytes): (Option<&str>, &[u8]) = match body {
            Body::Empty => (None, b""),
            Body::Json(b) => (Some("application/json"), b),
            Body::Npy(b) => (Some("application/x-npy"), b),
        };
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            bytes.len()
        );
        if let Some(t) = self.token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if let Some(c) = content_type {
            head.push_str(&format!("Content-Type: {c}\r\n"));
        }
        head.push_str("\r\n");
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        // The server may answer (413) and close before reading a large body.
        let _ = s.write_all(bytes);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let at = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(&out)));
        let head = String::from_utf8_lossy(&out[..at]).to_string();
        let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        Reply {
            status,
            head,
            body: out[at + 4..].to_vec(),
        }
    }

    fn get(&self, path: &str) -> Reply {
        self.send("GET", path, Body::Empty)
    }

    fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, Body::Empty)
    }

    /// `POST /v1/tasks/{task}/predict` with `{"inputs": rows}`.
    fn predict(&self, task: &str, rows: &[Vec<f32>]) -> Reply {
        let body = serde_json::json!({"inputs": rows}).to_string();
        self.send(
            "POST",
            &format!("/v1/tasks/{task}/predict"),
            Body::Json(body.as_bytes()),
        )
    }

    /// The loaded tasks' names.
    fn task_names(&self) -> Vec<String> {
        let r = self.get("/v1/tasks");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    }
}

/// The rows of `x` (`[batch, width]`).
fn rows_of(x: &Tensor, width: usize) -> Vec<Vec<f32>> {
    flat(x).chunks(width).map(<[f32]>::to_vec).collect()
}

fn npy(values: &[f32], shape: &[usize]) -> Vec<u8> {
    gatekit::serve::codec::npy_bytes(values, shape)
}

#[test]
fn server_answers_the_api_refuses_bad_requests_and_shuts_down() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = export("mlp.toml", tmp.path()).unwrap();
    let token_path = tmp.path().join("token");
    std::fs::write(&token_path, "s3cret-token\n").unwrap();
    let mut server = start(
        &dir,
        &[
            "--token-file",
            token_path.to_str().unwrap(),
            "--max-body",
            "4096",
            "--admin",
        ],
    );
    let anonymous = Client::new(&server.addr);
    let c = anonymous.with_token("s3cret-token");

    // Health needs no token; the rest does.
    assert_eq!(anonymous.get("/healthz").status, 200);
    let r = anonymous.get("/v1/tasks");
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.head.to_lowercase().contains("www-authenticate: bearer"));
    assert!(r.text().contains("missing Authorization"));
    let wrong = anonymous.with_token("s3cret-tokem");
    assert_eq!(wrong.get("/v1/tasks").status, 401);

    // Tasks.
    let r = c.get("/v1/tasks");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["model"]["name"], "mlp");
    assert_eq!(
        v["model"]["parameters"],
        8 * 40 + 40 + 40 * 40 + 40 + 40 + 1
    );
    assert_eq!(v["tasks"].as_array().unwrap().len(), 2);
    assert_eq!(v["tasks"][0]["output"], "regression");
    assert_eq!(v["tasks"][0]["input_shape"], serde_json::json!([8]));
    let r = c.get("/v1/tasks/b");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["name"], "b");

    // Predictions equal the exported ONNX (interpreter) for JSON, .npy and /v1/predict.
    let x = inputs(&[8], 5, 11);
    let rows = rows_of(&x, 8);
    let mut onnx = OnnxSession::open(&dir.join("b.onnx"), Runtime::Reference).unwrap();
    let want = flat(&onnx.run(&x, None).unwrap());
    let body = serde_json::json!({"inputs": rows}).to_string();
    let by_path = c.predict("b", &rows);
    assert_eq!(by_path.status, 200, "{}", by_path.text());
    let got = by_path.first_outputs();
    assert!(max_diff(&got, &want) <= 1e-5, "{got:?} vs {want:?}");
    let body2 = serde_json::json!({"task": "b", "inputs": rows}).to_string();
    let by_body = c.send("POST", "/v1/predict", Body::Json(body2.as_bytes()));
    assert_eq!(by_body.status, 200);
    assert_eq!(by_body.json()["outputs"], by_path.json()["outputs"]);
    let x_npy = npy(&flat(&x), &[5, 8]);
    let r = c.send("POST", "/v1/tasks/b/predict", Body::Npy(&x_npy));
    assert_eq!(r.status, 200);
    let parsed = gatekit::serve::codec::parse_npy_body(&r.body, &[1]).unwrap();
    assert_eq!(parsed.batch, 5);
    assert!(max_diff(&parsed.values, &want) <= 1e-5);

    // Bad requests: status and a message naming expected vs got.
    let (short_npy, bad_npy, big) = (npy(&[1.0; 6], &[2, 3]), b"\x93NUMPY garbage", [b' '; 5000]);
    let cases: Vec<(&str, Body, u16, &str)> = vec![
        (
            "/v1/tasks/zz/predict",
            Body::Json(body.as_bytes()),
            404,
            "unknown task `zz`; loaded tasks: a, b",
        ),
        (
            "/v1/tasks/a/predict",
            Body::Json(br#"{"inputs": [[1, 2, 3]]}"#),
            400,
            "expected inputs of shape [batch, 8] (or one example [8]), got [1, 3]",
        ),
        (
            "/v1/tasks/a/predict",
            Body::Json(b"{\"inputs\": [[1,"),
            400,
            "not valid JSON",
        ),
        (
            "/v1/tasks/a/predict",
            Body::Npy(&short_npy),
            400,
            "got [2, 3]",
        ),
        (
            "/v1/tasks/a/predict",
            Body::Npy(bad_npy),
            400,
            "the .npy body",
        ),
        (
            "/v1/tasks/a/predict",
            Body::Json(&big),
            413,
            "over the limit of 4096 bytes",
        ),
        (
            "/v1/predict",
            Body::Json(br#"{"inputs": [[0,0,0,0,0,0,0,0]]}"#),
            400,
            "no task",
        ),
        ("/v1/nothing", Body::Empty, 404, "no such endpoint"),
    ];
    for (path, body, status, needle) in cases {
        let r = c.send("POST", path, body);
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert!(
            r.text().contains(needle),
            "{path}: {} lacks {needle:?}",
            r.text()
        );
    }
    // NaN inputs are answered (200, one row per example; ReLU may map NaN to 0), not a crash.
    let mut nan = flat(&x);
    nan[0] = f32::NAN;
    let r = c.send(
        "POST",
        "/v1/tasks/a/predict",
        Body::Npy(&npy(&nan, &[5, 8])),
    );
    assert_eq!(r.status, 200);
    let parsed = gatekit::serve::codec::parse_npy_body(&r.body, &[1]).unwrap();
    assert_eq!(parsed.batch, 5);
    let r = c.send(
        "POST",
        "/v1/tasks/a/predict",
        Body::Json(b"[[null,0,0,0,0,0,0,0]]"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["outputs"].as_array().unwrap().len(), 1);

    // Fuzz: a few thousand malformed bodies, then a correct request is still answered.
    let mut rng = gatekit::rng::Rng::new(7);
    let good = body.as_bytes();
    for i in 0..2000 {
        let mut b: Vec<u8> = match i % 4 {
            0 => good[..rng.below(good.len())].to_vec(),
            1 => (0..rng.below(300)).map(|_| rng.below(256) as u8).collect(),
            2 => {
                let mut b = good.to_vec();
                let at = rng.below(b.len());
                b[at] = rng.below(256) as u8;
                b
            }
            _ => x_npy[..rng.below(200)].to_vec(),
        };
        if i % 7 == 0 {
            b.extend_from_slice(b"]]]}}");
        }
        let body = if i % 4 == 3 {
            Body::Npy(&b)
        } else {
            Body::Json(&b)
        };
        let st = c.send("POST", "/v1/tasks/a/predict", body).status;
        assert!([200, 400, 413].contains(&st), "fuzz body {i}: status {st}");
    }
    let r = c.predict("b", &rows);
    assert_eq!(r.status, 200);
    assert!(max_diff(&r.first_outputs(), &want) <= 1e-5);

    // Metrics count what happened.
    let r = c.get("/metrics");
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.contains("gatekit_tasks_loaded 2"), "{text}");
    assert!(text.contains("gatekit_requests_total{route=\"predict\",status=\"200\"}"));
    assert!(text.contains("gatekit_predict_seconds_bucket{task=\"b\""));
    assert!(text.contains("gatekit_resident_bytes"));

    // Hot remove and add: a task removed is 404; an export on another W is refused; the same
    // export added back answers again.
    assert_eq!(c.delete("/v1/admin/tasks/a").status, 200);
    let r = c.predict("a", &rows);
    assert_eq!(r.status, 404, "{}", r.text());
    let other_tmp = tmp.path().join("other");
    std::fs::create_dir(&other_tmp).unwrap();
    let other = export_seeded("mlp.toml", &other_tmp, 5).unwrap();
    let add = |p: &Path| {
        let body = serde_json::json!({"path": p}).to_string();
        c.send("POST", "/v1/admin/tasks", Body::Json(body.as_bytes()))
    };
    let r = add(&other);
    assert_eq!(r.status, 409);
    assert!(r.text().contains("W fingerprint"), "{}", r.text());
    let r = add(&dir);
    assert_eq!(r.status, 409, "b is still loaded");
    assert!(r.text().contains("task `b` is already loaded"));
    assert_eq!(c.delete("/v1/admin/tasks/b").status, 200);
    let r = add(&dir);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["added"], serde_json::json!(["a", "b"]));
    let r = c.predict("b", &rows);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["outputs"], by_body.json()["outputs"]);

    // SIGTERM: the server stops cleanly.
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// `gtk serve RUN` serves the run's last commit as its `--binarize` export would be served
/// (same W fingerprint, same mask bits, same answers as the binarized ONNX files) and writes
/// nothing into the run; a soft export is refused (library and CLI) instead of being answered
/// binarized, and so is a folder that is neither an export nor a run.
#[test]
fn a_run_is_served_as_its_binarized_export_and_a_soft_export_is_refused() {
    let mut checked = Vec::new();
    for model in ["mlp.toml", "lenet5-bn.toml"] {
        let tmp = tempfile::tempdir().unwrap();
        let Some((trainer, run)) = train(model, tmp.path(), 0) else {
            continue;
        };
        let dir = export_to(&trainer, &tmp.path().join("export"), true);
        drop(trainer);
        let before = common::fingerprint(&run);
        let data = common::shared_data().filter(|_| model != "mlp.toml");
        let from_run = ExportFolder::open(
            &run,
            data.as_deref(),
            ChangedData::Refuse,
            Default::default(),
        )
        .unwrap();
        assert_eq!(
            common::fingerprint(&run),
            before,
            "serving reads the run only"
        );
        let from_export = ExportFolder::read(&dir).unwrap();
        assert_eq!(from_run.gate, "binary");
        assert_eq!(from_run.fingerprint, from_export.fingerprint);
        assert_eq!(from_run.params, from_export.params);
        assert_eq!(from_run.tasks.len(), 2);
        for (r, e) in from_run.tasks.iter().zip(&from_export.tasks) {
            assert_eq!(r.name, e.name);
            assert_eq!(r.masks, e.masks, "{model} task {}: mask bits", r.name);
            assert_eq!(r.density, e.density);
            assert_eq!(r.objective, e.objective);
        }
        let served = ModelStore::new(from_run, 0);
        let exported = ModelStore::new(from_export, 0);
        for name in ["a", "b"] {
            let x = inputs(&served.input_shape(), 6, 17);
            let ours = flat(&served.forward(&served.task(name).unwrap(), &x).unwrap());
            let same = flat(&exported.forward(&exported.task(name).unwrap(), &x).unwrap());
            assert_eq!(ours, same, "{model} task {name}: run vs export");
            let mut onnx =
                OnnxSession::open(&dir.join(format!("{name}.onnx")), Runtime::Reference).unwrap();
            let d = max_diff(&ours, &flat(&onnx.run(&x, None).unwrap()));
            assert!(d <= 1e-5, "{model} task {name}: max |diff| {d}");
        }
        checked.push(model);
    }
    assert!(checked.contains(&"mlp.toml"));

    // Over HTTP: `gtk serve RUN` answers what the binarized export's ONNX file answers.
    let tmp = tempfile::tempdir().unwrap();
    let (trainer, run) = train("mlp.toml", tmp.path(), 0).unwrap();
    let binary = export_to(&trainer, &tmp.path().join("binary"), true);
    let soft = export_to(&trainer, &tmp.path().join("soft"), false);
    drop(trainer);
    let server = start(&run, &[]);
    let x = inputs(&[8], 3, 5);
    let r = Client::new(&server.addr).predict("a", &rows_of(&x, 8));
    assert_eq!(r.status, 200, "{}", r.text());
    let got = r.first_outputs();
    let mut onnx = OnnxSession::open(&binary.join("a.onnx"), Runtime::Reference).unwrap();
    let want = flat(&onnx.run(&x, None).unwrap());
    assert!(max_diff(&got, &want) <= 1e-5, "{got:?} vs {want:?}");
    drop(server);

    // The soft export: its ONNX files hold W ⊙ σ(M), which the 1-bit server would not answer.
    let err = ExportFolder::read(&soft).unwrap_err().to_string();
    assert!(
        err.contains("trained gate `sigmoid`") && err.contains("--binarize"),
        "{err}"
    );
    let out = common::gtk(tmp.path(), &["serve", soft.to_str().unwrap()]);
    common::assert_clean_error(
        &out,
        &[
            "all_tasks.onnx",
            "trained gate `sigmoid`",
            "gtk export RUN --binarize",
        ],
    );
    let out = common::gtk(tmp.path(), &["serve", tmp.path().to_str().unwrap()]);
    common::assert_clean_error(&out, &["is neither an export folder", "nor a run folder"]);
}

/// `--watch`: a `gtk adapt` run exported into the watched folder while serving has its new
/// task loaded (answering what its ONNX file answers), its old tasks (same masks) left alone;
/// an export on another W is refused and logged, and the served tasks stay as they were.
#[test]
fn watched_folder_loads_adapted_tasks_and_refuses_another_w() {
    let tmp = tempfile::tempdir().unwrap();
    let (trainer, run) = train("mlp.toml", tmp.path(), 0).unwrap();
    let exports = tmp.path().join("exports");
    let base = export_to(&trainer, &exports.join("base"), true);
    drop(trainer);
    let server = start(
        &base,
        &["--watch", exports.to_str().unwrap(), "--watch-ms", "50"],
    );
    let c = Client::new(&server.addr);
    assert_eq!(c.task_names(), ["a", "b"]);

    // A new task adapted on the frozen W, exported into the watched folder.
    let new = tmp.path().join("new.toml");
    std::fs::write(
        &new,
        "[defaults]\nkind = \"sinusoid\"\n[[task]]\nname = \"c\"\n",
    )
    .unwrap();
    let adapted = tmp.path().join("adapted");
    common::gtk_ok(
        tmp.path(),
        &[
            "adapt",
            run.to_str().unwrap(),
            "--task-set",
            new.to_str().unwrap(),
            "--method",
            "pick",
            "--shots",
            "10",
            "--no-baselines",
            "--out",
            adapted.to_str().unwrap(),
            "--quiet",
        ],
    );
    common::gtk_ok(
        tmp.path(),
        &[
            "export",
            adapted.to_str().unwrap(),
            "--binarize",
            "--out",
            exports.join("adapted").to_str().unwrap(),
            "--quiet",
        ],
    );
    let line = server.wait_log("watch: loaded", 30);
    assert!(
        line.contains("task(s) c from") && line.contains("adapted"),
        "{line}"
    );
    assert!(
        !line.contains("kept"),
        "the old tasks keep their masks: {line}"
    );
    assert_eq!(c.task_names(), ["a", "b", "c"]);
    let x = inputs(&[8], 4, 21);
    let r = c.predict("c", &rows_of(&x, 8));
    assert_eq!(r.status, 200, "{}", r.text());
    let got = r.first_outputs();
    let mut onnx =
        OnnxSession::open(&exports.join("adapted").join("c.onnx"), Runtime::Reference).unwrap();
    let want = flat(&onnx.run(&x, None).unwrap());
    assert!(max_diff(&got, &want) <= 1e-5, "{got:?} vs {want:?}");

    // Another W (another seed) appearing in the folder is refused and logged.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (trainer, _) = train("mlp.toml", &other, 5).unwrap();
    export_to(&trainer, &exports.join("other-w"), true);
    let line = server.wait_log("watch: refused", 30);
    assert!(
        line.contains("other-w") && line.contains("W fingerprint"),
        "{line}"
    );
    assert_eq!(c.task_names(), ["a", "b", "c"]);

    // A --watch that is no folder is refused before serving.
    let out = common::gtk(
        tmp.path(),
        &["serve", base.to_str().unwrap(), "--watch", "nowhere"],
    );
    common::assert_clean_error(&out, &["--watch", "nowhere", "is not a folder"]);
}

/// The batching wait is adaptive: a lone request runs at once instead of waiting `max_wait`
/// (here 2 s), and a request that is on its way in (an `arriving` guard held) is waited for,
/// so both run in one batch.
#[test]
fn batching_waits_only_while_another_request_is_arriving() {
    use gatekit::serve::batch::{BatchConfig, Batcher};
    use gatekit::serve::metrics::Metrics;
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let dir = export("mlp.toml", tmp.path()).unwrap();
    let store = Arc::new(ModelStore::new(ExportFolder::read(&dir).unwrap(), 1 << 20));
    let batcher = Batcher::start(
        store.clone(),
        Arc::new(Metrics::default()),
        BatchConfig {
            max_wait: Duration::from_secs(2),
            ..Default::default()
        },
    );
    let task = store.task("a").unwrap();
    let job = |seed: u64| {
        let mut values = flat(&inputs(&store.input_shape(), 1, seed));
        task.prepare(&mut values);
        values
    };
    // Alone: answered well before the 2 s wait (the old rule waited it out).
    let started = Instant::now();
    let rx = batcher.submit(task.clone(), job(1), 1, None).unwrap();
    let alone = rx.blocking_recv().unwrap().unwrap();
    assert_eq!(alone.len(), 1);
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    // Another request on its way in: the first waits for it (≥ the 200 ms before it comes).
    let arrival = batcher.arriving();
    let started = Instant::now();
    let first = batcher.submit(task.clone(), job(2), 1, None).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // The guard goes with the job and is released when the worker takes it, so the worker
    // never waits for a request it holds already: the batch runs at once, not at 2 s.
    let second = batcher
        .submit(task.clone(), job(3), 1, Some(arrival))
        .unwrap();
    let a = first.blocking_recv().unwrap().unwrap();
    let waited = started.elapsed();
    let b = second.blocking_recv().unwrap().unwrap();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_millis(1900),
        "{waited:?}"
    );
    assert_eq!((a.len(), b.len()), (1, 1));
    // A request whose own guard is still up when the worker takes it (its handler not yet
    // rescheduled): the worker releases the guard on taking the job, so it does not wait
    // 2 s for a request it holds. Released later (the first version), this waited it out.
    let arrival = batcher.arriving();
    let started = Instant::now();
    let rx = batcher
        .submit(task.clone(), job(4), 1, Some(arrival))
        .unwrap();
    assert_eq!(rx.blocking_recv().unwrap().unwrap().len(), 1);
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    batcher.shutdown();
}
