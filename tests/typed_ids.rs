//! Tasks and models are typed wherever they cross a module boundary: no public or crate-visible
//! signature in `src/` (and no trait method) takes a task or a model as a bare `usize`, or
//! gives tasks back as one. A task is a `params::TaskId`, one of a strategy's models a
//! `params::ModelId` (issue 26: `TaskId` used to stop at the learner's API, and `TaskId(0)`
//! stood for "the model" of a plain strategy). Grep-style over the sources, like
//! `tests/layering.rs` for imports: inside one function, indexing with `.index()` is fine.
//!
//! What counts as a bare index, by name (a count such as `tasks: usize` or `steps_per_task`
//! stays a `usize`):
//! - a parameter `task` or `model` of type `usize` or `&usize`;
//! - a parameter `tasks`, `models`, `selected` or `picked` of a `usize` collection or iterator
//!   (`&[usize]`, `Vec<usize>`, `impl IntoIterator<Item = usize>`);
//! - a function named `…task` or `model_of` returning `usize`, or `…tasks` returning a `usize`
//!   collection;
//! - a visible field `task` or `model` of type `usize`.

mod common;

use candle_core::Device;
use common::rust_files;
use gatekit::config::TaskSet;
use gatekit::learn::{Learner, Strategy};
use gatekit::model::ModelSpec;
use gatekit::params::{ModelId, TaskId};
use std::path::Path;

/// A file's code without comments and without its unit test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text` split at top-level commas (not inside `<>`, `()` or `[]`).
fn split_top(text: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    for (i, c) in text.char_indices() {
        match c {
            '<' | '(' | '[' => depth += 1,
            // `->` and `=>` are not closing brackets.
            '>' if i > 0 && matches!(text.as_bytes()[i - 1], b'-' | b'=') => {}
            '>' | ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// The byte ranges of every `trait … { … }` block of `code`.
fn trait_blocks(code: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = code[from..].find("trait ") {
        let at = from + i;
        from = at + "trait ".len();
        // An item: only a visibility before it on its line (not `trait` inside a string).
        let line_start = code[..at].rfind('\n').map_or(0, |n| n + 1);
        let before = code[line_start..at].trim();
        let Some(open) = code[at..].find('{').map(|o| at + o) else {
            break;
        };
        if !(before.is_empty() || before.starts_with("pub")) || code[at..open].contains(';') {
            continue;
        }
        let mut depth = 0;
        for (j, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        out.push((open, open + j));
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Whether a parameter `name: ty` passes a task or a model as a bare index.
fn bare_param(name: &str, ty: &str) -> bool {
    let ty: String = ty.split_whitespace().collect();
    match name {
        "task" | "model" => ty == "usize" || ty == "&usize",
        "tasks" | "models" | "selected" | "picked" => ty != "usize" && ty.contains("usize"),
        _ => false,
    }
}

/// Whether function `name` returning `ret` gives tasks or a model as bare indices.
fn bare_return(name: &str, ret: &str) -> bool {
    let ret: String = ret.split_whitespace().collect();
    ((name.ends_with("task") || name == "model_of") && ret == "usize")
        || (name.ends_with("tasks") && ret != "usize" && ret.contains("usize"))
}

/// The bare task and model indices in the visible signatures and fields of `code` (one
/// file's, comments stripped), and how many visible signatures it has.
fn bare_indices(code: &str) -> (Vec<String>, usize) {
    let traits = trait_blocks(code);
    let mut found = Vec::new();
    let mut signatures = 0;
    let mut from = 0;
    while let Some(i) = code[from..].find("fn ") {
        let at = from + i;
        from = at + 3;
        if at > 0
            && (code.as_bytes()[at - 1].is_ascii_alphanumeric() || code.as_bytes()[at - 1] == b'_')
        {
            continue;
        }
        let line_start = code[..at].rfind('\n').map_or(0, |n| n + 1);
        let before = &code[line_start..at];
        let in_trait = traits.iter().any(|&(a, b)| a < at && at < b);
        if !(before.trim_start().starts_with("pub") || in_trait) {
            continue;
        }
        let Some(open) = code[at..].find('(').map(|o| at + o) else {
            continue;
        };
        let name = code[at + 3..open].split('<').next().unwrap_or("").trim();
        let mut depth = 0;
        let Some(close) = code[open..].char_indices().find_map(|(j, c)| {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(open + j);
                    }
                }
                _ => {}
            }
            None
        }) else {
            continue;
        };
        signatures += 1;
        for param in split_top(&code[open + 1..close]) {
            if let Some((pname, ty)) = param.split_once(':') {
                let pname = pname.trim().trim_start_matches("mut ");
                if bare_param(pname, ty) {
                    found.push(format!("fn {name}(.. {} ..)", param.trim()));
                }
            }
        }
        let rest = &code[close + 1..];
        let end = rest.find(['{', ';']).unwrap_or(rest.len());
        if let Some(ret) = rest[..end].trim().strip_prefix("->") {
            let ret = ret.split(" where").next().unwrap_or(ret);
            if bare_return(name, ret) {
                found.push(format!("fn {name}(..) -> {}", ret.trim()));
            }
        }
    }
    for line in code.lines() {
        let line = line.trim();
        let Some(field) = line.strip_prefix("pub") else {
            continue;
        };
        let field = field.trim_start_matches("(crate)").trim_start();
        if let Some((name, ty)) = field.trim_end_matches(',').split_once(':')
            && matches!(name.trim(), "task" | "model")
            && ty.trim() == "usize"
        {
            found.push(format!("field `{line}`"));
        }
    }
    (found, signatures)
}

#[test]
fn no_bare_task_or_model_index_crosses_a_module_boundary() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = Vec::new();
    let mut signatures = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read source");
        let (bare, n) = bare_indices(&code(&text));
        signatures += n;
        let rel = file.strip_prefix(&src).expect("under src").display();
        found.extend(bare.into_iter().map(|b| format!("src/{rel}: {b}")));
    }
    // The scan saw the library's signatures (not an empty or misread tree).
    assert!(
        signatures > 500,
        "only {signatures} visible signatures found"
    );
    assert!(
        found.is_empty(),
        "tasks are `TaskId`s and models `ModelId`s across modules; bare indices:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_scan_finds_bare_indices() {
    let bad = code(
        "pub(crate) trait Backend {\n    fn train_step(\n        &mut self,\n        task: usize,\n    ) -> Result<f64>;\n}\n\
         impl Ctx {\n    pub fn masks(&self, tasks: impl IntoIterator<Item = usize>) -> Option<u8> {}\n\
             pub fn model_of(&self, task: TaskId) -> usize {}\n\
             pub fn masked_tasks(&self) -> Vec<usize> {}\n\
             pub fn next_task(&mut self, num_tasks: usize) -> usize {}\n\
             fn private(task: usize) {}\n\
             pub fn count(tasks: usize, steps_per_task: usize) -> usize {}\n}\n\
         pub struct Pick {\n    pub task: usize,\n    pub(crate) model: usize,\n    task: usize,\n}\n\
         // pub fn commented(task: usize) {}\n",
    );
    let (found, signatures) = bare_indices(&bad);
    assert_eq!(signatures, 6, "{found:?}");
    assert_eq!(
        found,
        [
            "fn train_step(.. task: usize ..)",
            "fn masks(.. tasks: impl IntoIterator<Item = usize> ..)",
            "fn model_of(..) -> usize",
            "fn masked_tasks(..) -> Vec<usize>",
            "fn next_task(..) -> usize",
            "field `pub task: usize,`",
            "field `pub(crate) model: usize,`",
        ]
    );
    let good = code(
        "pub fn model_of(&self, task: TaskId) -> ModelId {}\n\
         pub fn export(selected: &[TaskId], tasks: usize) -> Vec<TaskId> {}\n",
    );
    assert_eq!(bare_indices(&good), (Vec::new(), 2));
}

/// Which model answers which task, for every strategy, on learners of the `mlp` model with
/// three tasks: one model for every task (gated's `W`, shared, finetune, joint) or one per task
/// (separate), and a model the strategy does not have is an error, not a panic.
#[test]
fn each_task_is_answered_by_its_strategy_s_model() {
    let spec =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mlp.toml"))
            .expect("model file");
    let text = "[run]\nmodel = \"mlp\"\n\
                [[task]]\nname = \"a\"\nkind = \"linear\"\n\
                [[task]]\nname = \"b\"\nkind = \"linear\"\n\
                [[task]]\nname = \"c\"\nkind = \"linear\"\n";
    let set = TaskSet::parse_with(text, Path::new("ids.toml"), &|m: &str| {
        ModelSpec::parse(&spec, Path::new(m))
    })
    .expect("task set parses");
    let names = set.task_names();
    let weights = |l: &Learner, m: ModelId| -> Vec<f32> {
        let net = l.model(m).expect("model");
        let (_, w) = &net.params()[0];
        (w.as_tensor().flatten_all().and_then(|t| t.to_vec1::<f32>())).expect("weights")
    };
    for strategy in [
        Strategy::Gated,
        Strategy::Shared,
        Strategy::Separate,
        Strategy::Finetune,
        Strategy::Joint,
    ] {
        let l = Learner::new(strategy, &set.run, &set.model, &names, &Device::Cpu).unwrap();
        let models = if strategy == Strategy::Separate { 3 } else { 1 };
        for t in 0..3 {
            let expected = if models == 3 {
                ModelId(t)
            } else {
                ModelId::ONLY
            };
            assert_eq!(
                strategy.model_of(TaskId(t)),
                expected,
                "{strategy} task {t}"
            );
            assert_eq!(l.model_of(TaskId(t)), expected, "{strategy} task {t}");
            let served = l.network(TaskId(t)).unwrap();
            let (_, w) = &served.params()[0];
            let served: Vec<f32> = w.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(served, weights(&l, expected), "{strategy} task {t}");
        }
        let missing = l.model(ModelId(models)).unwrap_err().to_string();
        assert!(
            missing.contains(&format!("has {models} model(s), no model {models}")),
            "{strategy}: {missing}"
        );
    }
    // Separate's models are drawn apart: model 1 is not "the model" 0.
    let separate = Learner::new(
        Strategy::Separate,
        &set.run,
        &set.model,
        &names,
        &Device::Cpu,
    )
    .unwrap();
    assert_ne!(
        weights(&separate, ModelId::ONLY),
        weights(&separate, ModelId(1))
    );
}
