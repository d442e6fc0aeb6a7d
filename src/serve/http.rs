//! The HTTP API of `gtk serve` (HTTP/1.1 on hyper, one tokio thread for I/O; forward passes run
//! on the [`Batcher`]'s threads):
//!
//! | route | |
//! | --- | --- |
//! | `GET /healthz` | `ok` (503 while shutting down) |
//! | `GET /metrics` | Prometheus text |
//! | `GET /v1/tasks`, `GET /v1/tasks/{task}` | tasks: input shape, output kind, classes, mask density, model |
//! | `POST /v1/tasks/{task}/predict` | a batch as JSON `{"inputs": …}` or `.npy` |
//! | `POST /v1/predict` | the same with `"task"` in the JSON body (or `?task=` for `.npy`) |
//! | `POST /v1/admin/tasks` | `{"path": EXPORT_DIR}`: add its tasks (same W) — with `--admin` |
//! | `DELETE /v1/admin/tasks/{task}` | remove a task — with `--admin` |
//!
//! Shutdown (the future given to [`serve`] resolving, e.g. on SIGTERM): requests already
//! accepted finish and are answered; new ones get 503 until nothing is in flight, then the
//! server stops.

use super::auth::Token;
use super::batch::{BatchConfig, Batcher};
use super::codec::{NPY, json_response, npy_bytes, parse_json, parse_npy_body};
use super::error::{Result, ServeError};
use super::metrics::{Metrics, resident_bytes};
use super::store::{ExportFolder, ModelStore, TaskView};
use super::watch::Watcher;
use crate::task::Objective;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use serde_json::{Value, json};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Server settings besides the model.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Largest request body accepted, bytes.
    pub max_body: usize,
    /// The bearer token every request but `/healthz` must carry.
    pub token: Option<Token>,
    /// Batching and queue.
    pub batch: BatchConfig,
    /// Whether the admin routes (add/remove tasks) are on.
    pub admin: bool,
    /// How long shutdown waits for in-flight requests at most.
    pub drain: Duration,
    /// A folder polled for new exports to load (see [`super::watch`]).
    pub watch: Option<WatchConfig>,
    /// Where the server's log lines go (what the folder watch loaded or refused).
    pub log: fn(&str),
}

/// `--watch DIR --watch-ms N`.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// The folder new exports appear in.
    pub dir: std::path::PathBuf,
    /// How often its listing is read.
    pub every: Duration,
}

fn log_to_stderr(line: &str) {
    eprintln!("{line}");
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            max_body: 16 << 20,
            token: None,
            batch: BatchConfig::default(),
            admin: false,
            drain: Duration::from_secs(30),
            watch: None,
            log: log_to_stderr,
        }
    }
}

/// What every connection shares.
struct App {
    store: Arc<ModelStore>,
    batcher: Batcher,
    metrics: Arc<Metrics>,
    config: ServeConfig,
    draining: AtomicBool,
    in_flight: AtomicUsize,
}

type Answer = Response<Full<Bytes>>;

fn respond(status: u16, content_type: &str, body: impl Into<Bytes>) -> Answer {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn json_answer(status: u16, v: &Value) -> Answer {
    respond(status, "application/json", v.to_string())
}

fn error_answer(e: &ServeError) -> Answer {
    let mut r = json_answer(
        e.status(),
        &json!({"error": e.to_string(), "status": e.status()}),
    );
    if e.status() == 401 {
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer"),
        );
    }
    r
}

fn task_json(store: &ModelStore, t: &TaskView) -> Value {
    let classes = t.objective == Objective::Classification;
    json!({
        "name": t.name,
        "kind": t.kind,
        "input_shape": store.input_shape(),
        "output": if classes { "classification" } else { "regression" },
        "outputs": store.task_outputs(t),
        "classes": if classes { Value::from(store.task_outputs(t)) } else { Value::Null },
        "head": t.head,
        "mask_density": t.density,
        "mask_bytes": t.mask_bytes(),
        "standardized": t.standardize.is_some(),
    })
}

fn model_json(store: &ModelStore) -> Value {
    json!({
        "name": store.model().name,
        "input_shape": store.input_shape(),
        "outputs": store.outputs(),
        "parameters": store.param_count(),
        "weight_bytes": store.weight_bytes(),
        "w_fingerprint": store.fingerprint(),
        "export_gate": store.gate(),
    })
}

impl App {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Answer {
        let route = route_name(req.method(), req.uri().path());
        let answer = match self.clone().dispatch(req).await {
            Ok(a) => a,
            Err(e) => error_answer(&e),
        };
        self.metrics.request(route, answer.status().as_u16());
        answer
    }

    async fn dispatch(self: Arc<Self>, req: Request<Incoming>) -> Result<Answer> {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        if path == "/healthz" {
            return Ok(if self.draining.load(Ordering::SeqCst) {
                respond(503, "text/plain", "shutting down\n")
            } else {
                respond(200, "text/plain", "ok\n")
            });
        }
        if let Some(token) = &self.config.token {
            token.check(
                req.headers()
                    .get(hyper::header::AUTHORIZATION)
                    .map(|v| v.as_bytes()),
            )?;
        }
        if self.draining.load(Ordering::SeqCst) {
            return Err(ServeError::Unavailable(
                "the server is shutting down".into(),
            ));
        }
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        let allow = |allowed: &'static str| ServeError::Method {
            method: method.to_string(),
            path: path.clone(),
            allowed,
        };
        match parts.as_slice() {
            ["metrics"] if method == Method::GET => Ok(self.metrics_answer()),
            ["metrics"] => Err(allow("GET")),
            ["v1", "tasks"] if method == Method::GET => Ok(json_answer(
                200,
                &json!({
                    "model": model_json(&self.store),
                    "tasks": self.store.tasks().iter().map(|t| task_json(&self.store, t)).collect::<Vec<_>>(),
                }),
            )),
            ["v1", "tasks"] => Err(allow("GET")),
            ["v1", "tasks", task] if method == Method::GET => {
                let t = self.store.task(task)?;
                let mut v = task_json(&self.store, &t);
                v["model"] = model_json(&self.store);
                Ok(json_answer(200, &v))
            }
            ["v1", "tasks", _] => Err(allow("GET")),
            ["v1", "tasks", task, "predict"] if method == Method::POST => {
                let task = task.to_string();
                self.predict(req, Some(task)).await
            }
            ["v1", "tasks", _, "predict"] => Err(allow("POST")),
            ["v1", "predict"] if method == Method::POST => self.predict(req, None).await,
            ["v1", "predict"] => Err(allow("POST")),
            ["v1", "admin", "tasks"] if self.config.admin && method == Method::POST => {
                let body = self.body(req).await?;
                let v: Value = serde_json::from_slice(&body).map_err(|e| {
                    ServeError::BadRequest(format!(
                        "body is not valid JSON ({e}); expected {{\"path\": \"EXPORT_DIR\"}}"
                    ))
                })?;
                let dir = v.get("path").and_then(Value::as_str).ok_or_else(|| {
                    ServeError::BadRequest("expected {\"path\": \"EXPORT_DIR\"}".into())
                })?;
                let dir = std::path::PathBuf::from(dir);
                let store = self.store.clone();
                let added =
                    tokio::task::spawn_blocking(move || store.add(ExportFolder::read(&dir)?))
                        .await
                        .map_err(|e| ServeError::Forward(e.to_string()))??;
                Ok(json_answer(200, &json!({"added": added})))
            }
            ["v1", "admin", "tasks", task] if self.config.admin && method == Method::DELETE => {
                self.store.remove(task)?;
                Ok(json_answer(200, &json!({"removed": task})))
            }
            _ => Err(ServeError::NoRoute {
                method: method.to_string(),
                path: path.chars().take(200).collect(),
            }),
        }
    }

    fn metrics_answer(&self) -> Answer {
        let gauges = [
            (
                "gatekit_tasks_loaded",
                "Tasks loaded.",
                self.store.names().len() as f64,
            ),
            (
                "gatekit_weight_bytes",
                "Bytes of the shared W (float32).",
                self.store.weight_bytes() as f64,
            ),
            (
                "gatekit_mask_bytes",
                "Bytes of all loaded packed masks.",
                self.store.mask_bytes() as f64,
            ),
            (
                "gatekit_cache_bytes",
                "Bytes of cached effective weights.",
                self.store.cache_bytes() as f64,
            ),
            (
                "gatekit_resident_bytes",
                "Resident memory of the process.",
                resident_bytes().unwrap_or(0) as f64,
            ),
            (
                "gatekit_in_flight",
                "Predictions being answered.",
                self.in_flight.load(Ordering::SeqCst) as f64,
            ),
        ];
        respond(
            200,
            "text/plain; version=0.0.4",
            self.metrics.render(&gauges),
        )
    }

    /// The body, refused past `--max-body` (by its declared length first, without reading it).
    async fn body(&self, req: Request<Incoming>) -> Result<Bytes> {
        let limit = self.config.max_body;
        let declared = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(ServeError::TooLarge { limit });
        }
        match Limited::new(req.into_body(), limit).collect().await {
            Ok(c) => Ok(c.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                Err(ServeError::TooLarge { limit })
            }
            Err(e) => Err(ServeError::BadRequest(format!(
                "the body could not be read: {e}"
            ))),
        }
    }

    async fn predict(&self, req: Request<Incoming>, path_task: Option<String>) -> Result<Answer> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let r = self.predict_inner(req, path_task).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        r
    }

    async fn predict_inner(
        &self,
        req: Request<Incoming>,
        path_task: Option<String>,
    ) -> Result<Answer> {
        let started = Instant::now();
        let npy = req
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(NPY));
        let query_task = req.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("task=").map(str::to_string))
        });
        // On its way in until a worker takes it: a worker holding a batch waits for it (≤ max_wait).
        let arrival = self.batcher.arriving();
        // A task named in the path is checked before the body is read.
        if let Some(t) = &path_task {
            self.store.task(t)?;
        }
        let body = self.body(req).await?;
        let input = self.store.input_shape();
        let (body_task, mut batch) = if npy {
            (None, parse_npy_body(&body, &input)?)
        } else {
            parse_json(&body, &input)?
        };
        let name = match (path_task, body_task.or(query_task)) {
            (Some(p), Some(b)) if p != b => {
                return Err(ServeError::BadRequest(format!(
                    "the path names task `{p}` but the body names `{b}`"
                )));
            }
            (Some(p), _) => p,
            (None, Some(b)) => b,
            (None, None) => {
                return Err(ServeError::BadRequest(
                    "no task: POST /v1/tasks/{task}/predict, or put \"task\" in the JSON body (?task= for .npy)".into(),
                ));
            }
        };
        let task = self.store.task(&name)?;
        task.prepare(&mut batch.values);
        let rx = self
            .batcher
            .submit(task.clone(), batch.values, batch.batch, Some(arrival))?;
        let outputs = rx
            .await
            .map_err(|_| ServeError::Unavailable("the server is shutting down".into()))??;
        self.metrics
            .latency(&task.name, started.elapsed().as_secs_f64());
        let width = self.store.task_outputs(&task);
        let classes = task.objective == Objective::Classification;
        if npy {
            let mut r = respond(200, NPY, npy_bytes(&outputs, &[batch.batch, width]));
            if classes {
                let am: Vec<String> = super::codec::argmax(&outputs, width)
                    .into_iter()
                    .map(|a| a.map_or("null".into(), |i| i.to_string()))
                    .collect();
                if let Ok(v) = hyper::header::HeaderValue::from_str(&am.join(",")) {
                    r.headers_mut().insert("x-gatekit-argmax", v);
                }
            }
            Ok(r)
        } else {
            Ok(json_answer(
                200,
                &json_response(&task.name, &outputs, width, classes, task.head.as_deref()),
            ))
        }
    }
}

/// A fixed label per route for the metrics (never the raw path, which a client chooses).
fn route_name(method: &Method, path: &str) -> &'static str {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match (method, parts.as_slice()) {
        (_, ["healthz"]) => "healthz",
        (_, ["metrics"]) => "metrics",
        (_, ["v1", "tasks"]) => "tasks",
        (_, ["v1", "tasks", _]) => "task",
        (_, ["v1", "tasks", _, "predict"]) | (_, ["v1", "predict"]) => "predict",
        (_, ["v1", "admin", ..]) => "admin",
        _ => "other",
    }
}

/// Serves `store` on `listener` until `shutdown` resolves, then drains: requests in flight
/// are answered, new ones get 503, and it returns once none is left (or after
/// `config.drain`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<ModelStore>,
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let batcher = Batcher::start(store.clone(), metrics.clone(), config.batch);
    let app = Arc::new(App {
        store,
        batcher,
        metrics,
        config,
        draining: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
    });
    let (close_tx, close_rx) = tokio::sync::watch::channel(false);
    if let Some(w) = app.config.watch.clone() {
        spawn_watch(w, app.store.clone(), app.config.log, close_rx.clone())?;
    }
    let connections = Arc::new(AtomicUsize::new(0));
    tokio::pin!(shutdown);
    let mut drain_started: Option<Instant> = None;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let app = app.clone();
                let mut close = close_rx.clone();
                let connections = connections.clone();
                connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let svc = hyper::service::service_fn(move |req| {
                        let app = app.clone();
                        async move { Ok::<_, std::convert::Infallible>(app.handle(req).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = async move { close.wait_for(|c| *c).await.is_ok() } => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                    connections.fetch_sub(1, Ordering::SeqCst);
                });
            }
            _ = &mut shutdown, if drain_started.is_none() => {
                app.draining.store(true, Ordering::SeqCst);
                drain_started = Some(Instant::now());
            }
            _ = tokio::time::sleep(Duration::from_millis(10)), if drain_started.is_some() => {
                let waited = drain_started.map_or(Duration::ZERO, |t| t.elapsed());
                if app.in_flight.load(Ordering::SeqCst) == 0 || waited > app.config.drain {
                    break;
                }
            }
        }
    }
    drop(listener);
    let _ = close_tx.send(true);
    let deadline = Instant::now() + Duration::from_secs(2);
    while connections.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if let Ok(app) = Arc::try_unwrap(app) {
        app.batcher.shutdown();
    }
    Ok(())
}

/// Polls `w.dir` every `w.every` for new exports (on a blocking thread: reading an export is
/// file I/O) until `close` turns true, logging what each poll loaded or refused.
fn spawn_watch(
    w: WatchConfig,
    store: Arc<ModelStore>,
    log: fn(&str),
    mut close: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut watcher = Watcher::new(&w.dir).map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(w.every.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = close.wait_for(|c| *c) => break,
            }
            let store = store.clone();
            let polled = tokio::task::spawn_blocking(move || {
                let events = watcher.poll(&store);
                (watcher, events)
            })
            .await;
            let Ok((back, events)) = polled else { break };
            watcher = back;
            for e in events {
                log(&e.to_string());
            }
        }
    });
    Ok(())
}

/// A future resolving on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
