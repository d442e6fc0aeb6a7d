//! `gtk train --set KEY=V1,V2,...`: values of `[run]` or `[defaults]` keys given on the
//! command line, applied to the task set's text before it is parsed, so a value set here is
//! checked, resolved and recorded exactly as if the file held it (a `mask_recipe` still
//! derives the `mask_*` keys it does not see set, `eval_every` its image default, …).
//!
//! A key is written `lr`, `run.lr` or `defaults.noise`; a bare key is a `[run]` key when
//! there is one of that name, else a parameter of the set's task kinds. A `[defaults]` key set
//! here applies to every task, also one that sets the key itself (a swept value that some
//! tasks ignored would not be a sweep over it).

use crate::error::did_you_mean;
use crate::error::{Error, Result};

/// Every key of the `[run]` table (the fields of the raw `[run]` table, in its order).
pub const RUN_KEYS: &[&str] = &[
    "model",
    "steps",
    "schedule",
    "phase_steps",
    "w_policy",
    "batch_size",
    "optimizer",
    "lr",
    "momentum",
    "lr_schedule",
    "lr_warmup",
    "mask_lr_warmup",
    "adam_beta2",
    "mask_lr_schedule",
    "steps_per_task",
    "eval_every",
    "eval_subset",
    "full_eval_every",
    "full_eval_at_start",
    "checkpoint_every",
    "log_every",
    "seed",
    "dtype",
    "gate",
    "hat_max_scale",
    "binarize_after",
    "binarized_masks",
    "w_init",
    "mask_recipe",
    "mask_optimizer",
    "mask_lr",
    "mask_lr_scale",
    "mask_init",
    "mask_regularizer",
    "mask_regularizer_weight",
    "eval_train_limit",
    "engine",
    "eval_at_start",
    "val_fraction",
    "eval_split",
    "ewc_lambda",
    "ewc_gamma",
    "ewc_samples",
    "si_c",
    "si_xi",
    "scenario",
    "xdg_share_off",
    "xdg_gate_bias",
];

/// One value of one key, resolved: `key` is `run.NAME` or `defaults.NAME`, `value` the
/// value as TOML text (`0.003`, `"adam"`, `[0.0, 1.0]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// `run.NAME` or `defaults.NAME`.
    pub key: String,
    /// TOML text of the value.
    pub value: String,
}

impl Setting {
    /// The table (`run` or `defaults`) and the key's name in it.
    pub fn parts(&self) -> (&str, &str) {
        self.key.split_once('.').unwrap_or(("run", &self.key))
    }

    /// `NAME=VALUE` as a folder name would show it: the key without its table, the value
    /// without quotes or brackets (array items joined by `_`), every character outside
    /// `A-Z a-z 0-9 . _ + -` replaced by `_`.
    pub fn label(&self) -> String {
        let value = toml_value(&self.value).map_or_else(|| self.value.clone(), |v| label(&v));
        let value: String = value
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{}={value}", self.parts().1)
    }

    /// `KEY=VALUE` as `--set` takes it back.
    pub fn arg(&self) -> String {
        format!("{}={}", self.key, self.value)
    }
}

fn label(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(a) => a.iter().map(label).collect::<Vec<_>>().join("_"),
        other => other.to_string(),
    }
}

/// The TOML value `text` denotes, if it is one.
fn toml_value(text: &str) -> Option<toml::Value> {
    let doc: toml::Table = toml::from_str(&format!("v = {text}")).ok()?;
    doc.get("v").cloned()
}

fn bad(message: String) -> Error {
    Error::config("command line", "--set", message)
}

/// Splits `V1,V2,...` at the commas outside brackets and quotes.
fn split_values(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut quote, mut cur) = (0i32, None::<char>, String::new());
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => depth -= 1,
            (None, ',') if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

/// Parses one `--set KEY=V1,V2,...`: the key as written and each value as TOML text (a
/// value that is not TOML, like `sgd`, is taken as a string). Refuses an empty key or value
/// and a value given twice.
pub fn parse_set(text: &str) -> Result<(String, Vec<String>)> {
    let Some((key, values)) = text.split_once('=') else {
        return Err(bad(format!(
            "`{text}` has no `=`; write KEY=VALUE or KEY=V1,V2 (e.g. lr=0.003,0.01)"
        )));
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(bad(format!(
            "`{text}` has no key before `=`; write KEY=VALUE (e.g. lr=0.003)"
        )));
    }
    let mut out: Vec<String> = Vec::new();
    for v in split_values(values) {
        let v = v.trim();
        if v.is_empty() {
            return Err(bad(format!(
                "`{text}` has an empty value; write values separated by single commas, like {key}=0.003,0.01"
            )));
        }
        let value = match toml_value(v) {
            Some(value) => value.to_string(),
            None => toml::Value::String(v.to_string()).to_string(),
        };
        if out.contains(&value) {
            return Err(bad(format!("`{text}` lists the value {v} twice")));
        }
        out.push(value);
    }
    Ok((key.to_string(), out))
}

/// Resolves a key as written (`lr`, `run.lr`, `defaults.noise`) to `run.NAME` or
/// `defaults.NAME`; `params` are the task parameters the set's kinds take. An unknown key is
/// a one-line error listing the valid ones (and the likely one, for a typo).
pub fn resolve_key(key: &str, params: &[&str]) -> Result<String> {
    let list = || {
        format!(
            "[run] keys: {}; [defaults] keys of this set's task kinds: {}",
            RUN_KEYS
                .iter()
                .filter(|k| **k != "seed")
                .copied()
                .collect::<Vec<_>>()
                .join(", "),
            params.join(", ")
        )
    };
    let unknown = |name: &str, among: &[&str], table: &str| {
        let hint = did_you_mean(name, among.iter().copied());
        bad(format!(
            "`{name}` is not a {table} key{}{hint} ({})",
            if hint.is_empty() { "" } else { "; " },
            list()
        ))
    };
    let resolved = match key.split_once('.') {
        Some(("run", name)) if params.contains(&name) && !RUN_KEYS.contains(&name) => {
            return Err(bad(format!(
                "`{key}`: `{name}` is a task parameter, not a [run] key; write {name} or defaults.{name}"
            )));
        }
        Some(("defaults", name)) if RUN_KEYS.contains(&name) && !params.contains(&name) => {
            return Err(bad(format!(
                "`{key}`: `{name}` is a [run] key, not a task parameter; write {name} or run.{name}"
            )));
        }
        Some(("run", name)) => {
            if !RUN_KEYS.contains(&name) {
                return Err(unknown(name, RUN_KEYS, "[run]"));
            }
            format!("run.{name}")
        }
        Some(("defaults", name)) => {
            if !params.contains(&name) {
                return Err(unknown(name, params, "[defaults]"));
            }
            format!("defaults.{name}")
        }
        Some(_) => {
            return Err(bad(format!(
                "`{key}`: only [run] and [defaults] keys can be set; write NAME, run.NAME or defaults.NAME ({})",
                list()
            )));
        }
        None if RUN_KEYS.contains(&key) => format!("run.{key}"),
        None if params.contains(&key) => format!("defaults.{key}"),
        None => {
            let all: Vec<&str> = RUN_KEYS.iter().chain(params).copied().collect();
            return Err(unknown(key, &all, "[run] or [defaults]"));
        }
    };
    if resolved == "run.seed" {
        return Err(bad(
            "`seed` is set by --seed or --seeds (e.g. --seeds 0..3), not --set".into(),
        ));
    }
    Ok(resolved)
}

/// Applies `settings` to a task set's parsed text: `run.NAME` into `[run]`, `defaults.NAME`
/// into `[defaults]` and over every task's own value.
pub(crate) fn apply(doc: &mut toml::Table, settings: &[Setting]) -> Result<()> {
    for s in settings {
        let (table, name) = s.parts();
        let value = toml_value(&s.value)
            .ok_or_else(|| bad(format!("`{}`: `{}` is not a TOML value", s.key, s.value)))?;
        let entry = doc
            .entry(table)
            .or_insert_with(|| toml::Value::Table(Default::default()));
        let Some(t) = entry.as_table_mut() else {
            return Err(bad(format!("`{}`: [{table}] is not a table", s.key)));
        };
        t.insert(name.to_string(), value.clone());
        if table == "defaults"
            && let Some(toml::Value::Array(tasks)) = doc.get_mut("task")
        {
            for task in tasks.iter_mut().filter_map(|t| t.as_table_mut()) {
                if task.contains_key(name) {
                    task.insert(name.to_string(), value.clone());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_split_outside_brackets_and_quotes() {
        let (k, v) = parse_set("lr=0.003, 0.01").unwrap();
        assert_eq!(k, "lr");
        assert_eq!(v, vec!["0.003", "0.01"]);
        let (_, v) = parse_set("mask_init=[0.0, 1.0],[2.0,1.0]").unwrap();
        assert_eq!(v, vec!["[0.0, 1.0]", "[2.0, 1.0]"]);
        let (_, v) = parse_set("optimizer=sgd,\"adam\"").unwrap();
        assert_eq!(v, vec!["\"sgd\"", "\"adam\""]);
        let (_, v) = parse_set("steps=20").unwrap();
        assert_eq!(v, vec!["20"]);
    }

    #[test]
    fn labels_are_file_names() {
        let s = |key: &str, value: &str| Setting {
            key: key.into(),
            value: value.into(),
        };
        assert_eq!(s("run.lr", "0.003").label(), "lr=0.003");
        assert_eq!(
            s("run.mask_init", "[0.0, 1.0]").label(),
            "mask_init=0.0_1.0"
        );
        assert_eq!(s("run.optimizer", "\"adam\"").label(), "optimizer=adam");
        assert_eq!(s("defaults.path", "\"a/b c\"").label(), "path=a_b_c");
    }

    #[test]
    fn bad_sets_name_the_problem() {
        for (text, needle) in [
            ("lr", "has no `=`"),
            ("=1", "no key"),
            ("lr=0.1,,0.2", "empty value"),
            ("lr=0.1,", "empty value"),
            ("lr=0.1,0.10", "lists the value 0.10 twice"),
        ] {
            let e = parse_set(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.starts_with("command line: `--set`"), "{e}");
        }
        let params = ["noise", "slope"];
        assert_eq!(resolve_key("lr", &params).unwrap(), "run.lr");
        assert_eq!(resolve_key("run.mask_lr", &params).unwrap(), "run.mask_lr");
        assert_eq!(resolve_key("noise", &params).unwrap(), "defaults.noise");
        for (key, needle) in [
            (
                "lrr",
                "`lrr` is not a [run] or [defaults] key; did you mean `lr`?",
            ),
            ("run.noise", "`noise` is a task parameter, not a [run] key"),
            ("defaults.lr", "`lr` is a [run] key, not a task parameter"),
            ("run.nope", "`nope` is not a [run] key"),
            ("defaults.nosie", "did you mean `noise`?"),
            ("model.x", "only [run] and [defaults] keys"),
            ("seed", "--seeds"),
        ] {
            let e = resolve_key(key, &params).unwrap_err().to_string();
            assert!(e.contains(needle), "{key}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        let e = resolve_key("zzz", &params).unwrap_err().to_string();
        assert!(
            e.contains("mask_lr") && e.contains("noise"),
            "lists the keys: {e}"
        );
    }

    /// RUN_KEYS is the raw `[run]` table's field list: serde's unknown-field message lists
    /// the same names.
    #[test]
    fn run_keys_are_the_run_table() {
        let e = toml::from_str::<super::super::run_config::RawRun>("no_such_key = 1")
            .unwrap_err()
            .to_string();
        let listed: Vec<&str> = e.split('`').skip(3).step_by(2).collect();
        assert_eq!(listed, RUN_KEYS, "{e}");
    }
}
