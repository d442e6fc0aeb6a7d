//! The library's and the binary's layers, checked from their own sources: every top-level
//! module of `src/` has a place in [`LAYERS`], every module of `src/bin/gtk/` one in
//! [`BIN_LAYERS`], and each may only use modules of lower layers, so there are no upward
//! imports and no cycles between modules; inside a library module, the files that are not a
//! `mod.rs` do not import each other in a cycle.
//!
//! In the binary, `crate::` is the binary's own root (`main.rs`), not the library: a
//! `crate::name` that is not one of its modules is an item of `main.rs`, the top layer.
//!
//! A new top-level module must be added to [`LAYERS`] (or [`BIN_LAYERS`]); the test fails
//! until it is.
//!
//! Two measures of size keep the house readable: no room (top-level folder of `src/`) holds
//! [`LARGEST_ROOM_SHARE`] or more of the code, and no function is longer than
//! [`MAX_FUNCTION_LINES`] lines, except the dispatch matches in [`LONG_FUNCTIONS`].

mod common;

use common::rust_files;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom to top. A module may use any module of a lower layer, none of its own or a higher one.
const LAYERS: &[&[&str]] = &[
    // Foundations: no gatekit imports but these.
    &["error", "rng"],
    // Numbers, files and figures: CPU kernels, the run folder's protocol, TensorBoard's file
    // format, optimizer settings and rules, figures drawn to PNG and SVG (used by `report` and
    // `sweep`, which decide what a figure shows).
    &["kernel", "run_folder", "tfevents", "optim", "plot"],
    // The names and the store of a run's tensors (optimizer slots included).
    &["params"],
    // Task gates and their masks.
    &["gate"],
    // Layer types: each one's shapes, reference forward, engine op and ONNX nodes.
    &["layers"],
    // Datasets; model architectures (layer specs and the reference network).
    &["data", "model"],
    // Task kinds and their registry.
    &["task"],
    // The fast training engine.
    &["engine"],
    // What a user writes: task-set files and the resolved run configuration.
    &["config"],
    // The strategies and their learners (one training step, fast engine or reference).
    &["learn"],
    // A run read-only at its last commit, and the formats of its files.
    &["run"],
    // The training loop, the only writer of a run.
    &["train"],
    // What uses trained runs (through `run`, never `train`).
    &["export", "report", "adapt"],
    // Many runs.
    &["sweep"],
    // Serving exports over HTTP.
    &["serve"],
];

/// The binary `gtk` (`src/bin/gtk/`), bottom to top, by the same rule.
const BIN_LAYERS: &[&[&str]] = &[
    // The command line's arguments.
    &["cli"],
    // What several commands share: the progress display, printing a run's results, a new
    // run's folder name and strategies.
    &["progress", "results", "runs", "stop", "launch"],
    // The commands (a sweep is many `gtk train` processes, started as processes, not calls).
    &[
        "adapt", "data", "eval", "export", "report", "serve", "tasks", "sweep",
    ],
    // `gtk train`, which hands `--seeds` to the sweep.
    &["train"],
    // `gtk sweep`: status, summary, and one member trained as `gtk train` would.
    &["sweep_cmd"],
    // The crate root: parses and dispatches.
    &["main"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The binary's modules that `code` (one file of it) uses through `crate::`; a name that is
/// not a module is an item of the crate root, `main`.
fn bin_uses<'a>(code: &'a str, modules: &BTreeSet<&'a str>) -> BTreeSet<&'a str> {
    paths_after(code, "crate::")
        .into_iter()
        .filter_map(|p| p.first().copied())
        .chain(grouped_after_crate(code))
        .map(|t| if modules.contains(t) { t } else { "main" })
        .collect()
}

/// The imports of `files` (module, code) that go to the same or a higher layer of `layers`.
fn bin_violations(files: &[(&str, String)], layers: &[&[&str]]) -> (usize, Vec<String>) {
    let layer = |m: &str| layers.iter().position(|l| l.contains(&m));
    let modules: BTreeSet<&str> = files.iter().map(|(m, _)| *m).collect();
    let mut edges = 0;
    let mut violations = Vec::new();
    for (me, code) in files {
        let Some(here) = layer(me) else {
            violations.push(format!("`{me}` has no layer in BIN_LAYERS"));
            continue;
        };
        for target in bin_uses(code, &modules) {
            if target == *me {
                continue;
            }
            edges += 1;
            match layer(target) {
                Some(there) if there < here => {}
                there => violations.push(format!(
                    "{me}.rs (layer {here}) uses `{target}` (layer {there:?})"
                )),
            }
        }
    }
    (edges, violations)
}

/// The code of a file without comments (doc links may point anywhere) and without its unit
/// test module (whose `super` is the file itself).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read source");
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The identifiers following each occurrence of `prefix` (`crate::` → `train`, `super::` → …).
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let path: Vec<&str> = rest
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .next()
            .unwrap_or("")
            .split("::")
            .filter(|s| !s.is_empty())
            .collect();
        out.push(path);
    }
    out
}

/// The first segment of every path in `use crate::{a::X, b, c::{Y, Z}}` groups.
fn grouped_after_crate(code: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::{") {
        rest = &rest[i + "crate::{".len()..];
        let mut depth = 1;
        let mut start = 0;
        for (j, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' | ',' if depth == 1 => {
                    let item = rest[start..j].trim();
                    if let Some(first) = item.split("::").next().filter(|f| !f.is_empty()) {
                        out.push(first);
                    }
                    start = j + 1;
                    if c == '}' {
                        break;
                    }
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
    }
    out
}

/// `src/a/b.rs` → `["a", "b"]`, `src/a/mod.rs` → `["a"]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("file name");
    if last != "mod.rs" {
        parts.push(last.trim_end_matches(".rs").to_string());
    }
    parts
}

#[test]
fn grouped_crate_imports_are_seen() {
    assert_eq!(
        grouped_after_crate("use crate::{train::X, gate, model::{A, B}};\nuse crate::{error::E};"),
        vec!["train", "gate", "model", "error"]
    );
}

#[test]
fn binary_modules_only_use_lower_layers() {
    let dir = common::repo("src/bin/gtk");
    let mut paths = Vec::new();
    rust_files(&dir, &mut paths);
    let files: Vec<(&str, String)> = paths
        .iter()
        .map(|p| {
            let stem = p.file_stem().and_then(|s| s.to_str()).expect("file name");
            (stem, code(p))
        })
        .collect();
    assert!(
        files.len() > 10,
        "only {} files in src/bin/gtk",
        files.len()
    );
    let (edges, violations) = bin_violations(&files, BIN_LAYERS);
    assert!(
        edges > 10,
        "only {edges} imports between the binary's modules found: is the parser broken?"
    );
    assert!(
        violations.is_empty(),
        "upward or same-layer imports in the binary:\n{}",
        violations.join("\n")
    );
}

/// The check sees the circle the binary once had (`train` → `sweep::run`, `sweep` →
/// `train::run_dir`) and an upward use of an item of `main.rs`.
#[test]
fn binary_check_finds_a_circle_and_a_root_item() {
    let files = vec![
        (
            "train",
            "use crate::cli::X; crate::sweep::run(args)".to_string(),
        ),
        (
            "sweep",
            "let d = crate::train::run_dir(a, b, c)?;".to_string(),
        ),
        ("eval", "crate::changed_data(true)".to_string()),
        ("cli", String::new()),
        ("main", "mod train; train::run(a)".to_string()),
    ];
    let layers: &[&[&str]] = &[&["cli"], &["eval", "sweep"], &["train"], &["main"]];
    let (edges, violations) = bin_violations(&files, layers);
    assert_eq!(edges, 4);
    assert_eq!(
        violations,
        vec![
            "sweep.rs (layer 1) uses `train` (layer Some(2))".to_string(),
            "eval.rs (layer 1) uses `main` (layer Some(3))".to_string(),
        ]
    );
}

#[test]
fn modules_only_use_lower_layers() {
    let src = common::repo("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut modules = BTreeSet::new();
    for f in &files {
        let m = module_path(&src, f);
        if let Some(top) = m.first().filter(|t| *t != "bin" && *t != "lib") {
            modules.insert(top.clone());
        }
    }
    let unplaced: Vec<&String> = modules.iter().filter(|m| layer_of(m).is_none()).collect();
    assert!(
        unplaced.is_empty(),
        "top-level modules with no layer in tests/layering.rs: {unplaced:?}"
    );
    let mut violations = Vec::new();
    let mut edges = 0;
    for f in &files {
        let m = module_path(&src, f);
        let Some(top) = m.first().filter(|t| modules.contains(*t)) else {
            continue;
        };
        let here = layer_of(top).expect("placed");
        let text = code(f);
        let used: BTreeSet<&str> = paths_after(&text, "crate::")
            .into_iter()
            .filter_map(|p| p.first().copied())
            .chain(grouped_after_crate(&text))
            .filter(|t| *t != top && modules.contains(*t))
            .collect();
        for target in used {
            edges += 1;
            let there = layer_of(target).expect("placed");
            if there >= here {
                violations.push(format!(
                    "{} (layer {here}, `{top}`) uses `{target}` (layer {there})",
                    f.strip_prefix(&src).expect("under src").display()
                ));
            }
        }
    }
    assert!(
        edges > 20,
        "only {edges} imports between modules found: is the parser broken?"
    );
    assert!(
        violations.is_empty(),
        "upward or same-layer imports:\n{}",
        violations.join("\n")
    );
}

#[test]
fn files_of_a_module_import_each_other_without_cycles() {
    let src = common::repo("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    // Leaf files only (a `mod.rs` declares and re-exports its children; that is not a cycle).
    let leaves: BTreeSet<Vec<String>> = files
        .iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "mod.rs"))
        .map(|f| module_path(&src, f))
        .collect();
    let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for f in &files {
        if f.file_name().is_some_and(|n| n == "mod.rs") {
            continue;
        }
        let me = module_path(&src, f);
        let parent = &me[..me.len() - 1];
        let code = code(f);
        let mut targets = BTreeSet::new();
        let mut candidates: Vec<Vec<String>> = paths_after(&code, "super::")
            .into_iter()
            .map(|p| {
                parent
                    .iter()
                    .cloned()
                    .chain(p.iter().map(|s| s.to_string()))
                    .collect()
            })
            .collect();
        candidates.extend(
            paths_after(&code, "crate::")
                .into_iter()
                .map(|p| p.iter().map(|s| s.to_string()).collect()),
        );
        for path in candidates {
            // The longest prefix that is a leaf file, other than this one.
            if let Some(target) = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| leaves.contains(p))
                && target != me
            {
                targets.insert(target);
            }
        }
        graph.insert(me, targets);
    }
    assert!(
        graph.values().map(BTreeSet::len).sum::<usize>() > 20,
        "too few file imports found: is the parser broken?"
    );
    // Depth-first search for a back edge.
    fn visit(
        node: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
        cycles: &mut Vec<String>,
    ) {
        state.insert(node.clone(), 1);
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next).copied().unwrap_or(0) {
                0 => visit(next, graph, state, stack, cycles),
                1 => {
                    let from = stack.iter().position(|n| n == next).unwrap_or(0);
                    let names: Vec<String> = stack[from..]
                        .iter()
                        .chain(std::iter::once(next))
                        .map(|n| n.join("/"))
                        .collect();
                    cycles.push(names.join(" → "));
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.clone(), 2);
    }
    let mut state = BTreeMap::new();
    let mut cycles = Vec::new();
    for node in graph.keys() {
        if !state.contains_key(node) {
            visit(node, &graph, &mut state, &mut Vec::new(), &mut cycles);
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

/// The readers of a run (export, report, adapt) depend on `run` (and what is below it), never
/// on the trainer: a `Run` is read-only, so none of them can write into the run it reads.
#[test]
fn readers_do_not_import_the_trainer() {
    let src = common::repo("src");
    let mut offenders = Vec::new();
    for room in ["export", "report", "adapt", "serve"] {
        let mut files = Vec::new();
        rust_files(&src.join(room), &mut files);
        for f in files {
            let code = code(&f);
            let uses_train = paths_after(&code, "crate::")
                .iter()
                .any(|p| p.first() == Some(&"train"))
                || grouped_after_crate(&code).contains(&"train");
            if uses_train {
                offenders.push(f.display().to_string());
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "these readers import crate::train; use crate::run instead: {offenders:?}"
    );
}

/// The largest share of the code one room (top-level folder of `src/`) may hold.
const LARGEST_ROOM_SHARE: f64 = 0.12;

/// Lines of `.rs` per top-level folder of `src/`, and of all of `src/` (files directly in
/// `src/` count only in the total).
fn room_sizes(src: &Path) -> (BTreeMap<String, usize>, usize) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut rooms = BTreeMap::new();
    let mut total = 0;
    for f in &files {
        let lines = std::fs::read_to_string(f)
            .expect("read source")
            .lines()
            .count();
        total += lines;
        let rel = f.strip_prefix(src).expect("under src");
        let mut parts = rel.iter();
        if let (Some(room), Some(_)) = (parts.next(), parts.next()) {
            *rooms
                .entry(room.to_string_lossy().into_owned())
                .or_insert(0) += lines;
        }
    }
    (rooms, total)
}

#[test]
fn no_room_holds_12_percent_of_the_code() {
    let (rooms, total) = room_sizes(&common::repo("src"));
    assert!(
        rooms.len() > 15 && total > 20_000,
        "only {} rooms and {total} lines found: is the count broken?",
        rooms.len()
    );
    let mut by_size: Vec<(&String, &usize)> = rooms.iter().collect();
    by_size.sort_by(|a, b| b.1.cmp(a.1));
    let (room, &lines) = by_size[0];
    let share = lines as f64 / total as f64;
    assert!(
        share < LARGEST_ROOM_SHARE,
        "src/{room}/ holds {lines} of {total} lines ({:.1} %), the limit is {:.0} %; split it by \
         concept into rooms of their own",
        100.0 * share,
        100.0 * LARGEST_ROOM_SHARE
    );
}

/// The longest a function may be, in lines from its `fn` to its closing brace.
const MAX_FUNCTION_LINES: usize = 120;

/// Functions allowed to be longer: (file under `src/`, function, why).
const LONG_FUNCTIONS: &[(&str, &str, &str)] = &[(
    "export/interpreter.rs",
    "run_node",
    "a dispatch match with one short arm per ONNX op: splitting it would scatter the ops",
)];

/// `code` with the text of comments, strings and character literals blanked (newlines kept),
/// so that only the braces of the code remain.
fn blank_literals(code: &str) -> String {
    let c: Vec<char> = code.chars().collect();
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut out = String::with_capacity(code.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    // The character `k` places after `i`.
    let at = |i: usize, k: usize| c.get(i + k).copied();
    let mut i = 0;
    while i < c.len() {
        if c[i] == '/' && at(i, 1) == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && at(i, 1) == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i, 1) == Some('*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i, 1) == Some('/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && (i == 0 || !ident(c[i - 1]) || (c[i - 1] == 'b' && (i < 2 || !ident(c[i - 2]))))
            && matches!(at(i, 1), Some('"') | Some('#'))
        {
            // A raw string r"…", r#"…"#, br"…" (or an identifier `r#name`).
            let hashes = (1..).take_while(|&k| at(i, k) == Some('#')).count();
            if at(i, 1 + hashes) != Some('"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            i += 2 + hashes;
            while i < c.len() {
                if c[i] == '"' && (1..=hashes).all(|k| at(i, k) == Some('#')) {
                    i += 1 + hashes;
                    break;
                }
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                if let Some(&ch) = c.get(i) {
                    blank(&mut out, ch);
                }
                i += 1;
            }
            i += 1;
        } else if c[i] == '\'' && at(i, 1) == Some('\\') {
            // '\n', '\'', '\u{7b}': past the escaped character, then to the closing quote.
            i += 3;
            while i < c.len() && c[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else if c[i] == '\'' && at(i, 2) == Some('\'') {
            // 'a', '{'; a lifetime (`'a`) has no closing quote.
            i += 3;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Every function with a body in `code`: (name, first line, length in lines).
fn function_lengths(code: &str) -> Vec<(String, usize, usize)> {
    let code = blank_literals(code);
    let mut found = Vec::new();
    // Functions whose body is open: (name, first line, brace depth of the body).
    let mut open: Vec<(String, usize, usize)> = Vec::new();
    // A `fn name` seen whose body has not started (a `;` first means it has none).
    let mut pending: Option<(String, usize)> = None;
    let mut depth = 0;
    // Open parentheses and brackets: a `;` inside them (`[f32; 4]`) ends no declaration.
    let mut parens = 0;
    for (n, line) in code.lines().enumerate() {
        let words: Vec<&str> = line
            .split(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
            .collect();
        if pending.is_none()
            && let Some(k) = words.iter().position(|w| *w == "fn")
            && let Some(name) = words[k + 1..].iter().find(|w| !w.is_empty())
            && line.contains(&format!("fn {name}"))
        {
            pending = Some((name.to_string(), n + 1));
        }
        for ch in line.chars() {
            match ch {
                '{' => {
                    depth += 1;
                    if let Some((name, start)) = pending.take() {
                        open.push((name, start, depth));
                    }
                }
                '}' => {
                    if open.last().is_some_and(|o| o.2 == depth)
                        && let Some((name, start, _)) = open.pop()
                    {
                        found.push((name, start, n + 1 - start + 1));
                    }
                    depth -= 1;
                }
                '(' | '[' => parens += 1,
                ')' | ']' => parens -= 1,
                ';' if parens == 0 => pending = None,
                _ => {}
            }
        }
    }
    found
}

/// The scan sees through braces in strings, characters, raw strings and comments, skips
/// declarations without a body, and measures nested functions on their own.
#[test]
fn function_lengths_are_measured_from_fn_to_its_brace() {
    let code = r##"
trait T {
    fn declared(&self) -> usize;
}
pub(crate) fn outer<'a>(x: &'a str) -> usize {
    let s = "{ not a brace";
    let c = '{';
    let e = ['\'', '{'];
    let r = r#"{ "} raw"#;
    // a } in a comment
    /* and { /* nested */ here */
    fn inner() {
        let _ = "}";
    }
    if x.is_empty() { 0 } else { 1 }
}
fn last(a: [u8; 2]) -> u8 { a[0] }
"##;
    assert_eq!(
        function_lengths(code),
        vec![
            ("inner".to_string(), 12, 3),
            ("outer".to_string(), 5, 12),
            ("last".to_string(), 17, 1),
        ]
    );
}

#[test]
fn functions_are_at_most_120_lines() {
    let src = common::repo("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut measured = 0;
    let mut long = Vec::new();
    for f in &files {
        let rel = f
            .strip_prefix(&src)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(f).expect("read source");
        for (name, line, lines) in function_lengths(&text) {
            measured += 1;
            let allowed = LONG_FUNCTIONS
                .iter()
                .any(|(file, func, _)| *file == rel && *func == name);
            if lines > MAX_FUNCTION_LINES && !allowed {
                long.push(format!("src/{rel}:{line} `{name}`: {lines} lines"));
            }
        }
    }
    assert!(
        measured > 1000,
        "only {measured} functions found: is the scan broken?"
    );
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines (split them into named steps, or add a \
         dispatch match to LONG_FUNCTIONS with the reason):\n{}",
        long.join("\n")
    );
}

/// Every allowed long function still exists and is still long (a stale entry would hide the
/// next function of that name).
#[test]
fn long_function_allowances_are_current() {
    let src = common::repo("src");
    for (file, func, why) in LONG_FUNCTIONS {
        assert!(!why.is_empty());
        let text = std::fs::read_to_string(src.join(file)).expect("read source");
        let lines = function_lengths(&text)
            .into_iter()
            .find(|(name, _, _)| name == func)
            .map(|(_, _, lines)| lines);
        assert!(
            lines.is_some_and(|l| l > MAX_FUNCTION_LINES),
            "src/{file} `{func}` is in LONG_FUNCTIONS but measures {lines:?} lines"
        );
    }
}
