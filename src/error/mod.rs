//! The library's error type: every variant names the file, field or value at fault and what
//! would be valid, so the CLI can print it as one line and a user can fix the input.

mod spec;
mod suggest;

pub use spec::SpecError;
use std::path::PathBuf;
pub(crate) use suggest::{closest, did_you_mean};

/// Errors from gatekit's library. The CLI prints them with `{:#}` and exits non-zero.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    // The OS message is the source; `{:#}` (anyhow, the CLI) prints "path: message".
    #[error("{path}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A TOML file does not parse or does not match the expected schema; the path carries the
    /// line and column from the TOML parser (`file:line:column`).
    // Like `Io`: the parser's message is the source, so `{:#}` prints "path: message".
    #[error("{path}")]
    Toml {
        /// The TOML file, with `:line:column` when the parser knows them.
        path: PathBuf,
        /// The parser's error, kept whole; it prints as one line.
        #[source]
        source: TomlError,
    },
    /// A model's layers do not fit together (the source says where and why).
    #[error("{origin}")]
    Model {
        /// The model file or table.
        origin: String,
        /// Which layer and why.
        #[source]
        source: Box<SpecError>,
    },
    /// Bytes for a file could not be encoded (safetensors, JSON): a bug or an impossible
    /// tensor, never the user's input.
    #[error("{path}: cannot encode {what}")]
    Encode {
        /// The file being written.
        path: PathBuf,
        /// What was being encoded.
        what: &'static str,
        /// The encoder's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A JSON file of gatekit's (a commit record, a metrics line, a sweep description or
    /// summary) does not parse; the parser's error, with line and column, is the source.
    #[error("{path}: {what}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What it should have been (`not a valid commit record`, `line 3`).
        what: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("{origin}: `{field}` {message}")]
    Config {
        /// The file (or "command line") the value came from.
        origin: String,
        /// The key, e.g. `run.steps`.
        field: String,
        /// What is wrong and what would be valid.
        message: String,
    },
    /// A task names a kind that is not registered.
    #[error("task `{task}`: unknown task kind `{kind}`; known kinds: {known}")]
    UnknownTaskKind {
        /// Task name.
        task: String,
        /// The kind it asked for.
        kind: String,
        /// The registered kinds, comma separated.
        known: String,
    },
    /// A task parameter is unknown, mistyped or out of range.
    #[error("task `{task}`: parameter `{param}` {message}")]
    Param {
        /// Task name.
        task: String,
        /// Parameter name.
        param: String,
        /// What is wrong and what would be valid.
        message: String,
    },
    /// The model's shapes do not fit a task, or a layer list is inconsistent.
    #[error("{0}")]
    Shape(String),
    /// A run folder is missing or incomplete.
    #[error("{path}: {message}")]
    Run {
        /// The run folder or file.
        path: PathBuf,
        /// What is missing and how to get it.
        message: String,
    },
    /// A checkpoint is unreadable or does not match the run's model.
    #[error("{path}: corrupt or mismatched checkpoint: {message}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        message: String,
        /// The reader's error, when one said so (safetensors, JSON, candle).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A dataset file is missing, unreadable or malformed.
    #[error("{path}: {message}")]
    Data {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong and how to fix it (e.g. which command fetches the data).
        message: String,
    },
    /// A data file holds other bytes than the run recorded when it read it (size and SHA-256):
    /// resuming would mix two data sets, evaluating would report other data's numbers.
    #[error("{path}: {message}")]
    DataChanged {
        /// The data file.
        path: PathBuf,
        /// Which run, both fingerprints, and how to go on.
        message: String,
    },
    /// Another process writes this run folder (only one `gtk train` may).
    #[error(
        "{path}: is being written by {holder}; wait for it to finish or stop it (a run folder has one writer at a time)"
    )]
    Locked {
        /// The run folder.
        path: PathBuf,
        /// Who holds the lock: process id and command line.
        holder: String,
    },
    /// Training produced a non-finite loss or parameter; nothing of it was committed.
    #[error(
        "{path}: training diverged at step {step}: {what} of strategy `{strategy}` ({task}) is not finite; the run keeps its last good commit (step {last_good}); continue it with a smaller learning rate: gtk train --resume {path} --lr <smaller>"
    )]
    Diverged {
        /// The run folder.
        path: PathBuf,
        /// The step at which it was detected.
        step: usize,
        /// Which value: `the training loss`, `parameter gated/fc1.weight`, ….
        what: String,
        /// gated, shared or separate.
        strategy: String,
        /// Which task: "task `a`", or "all tasks" for shared weights.
        task: String,
        /// The step of the last commit.
        last_good: usize,
    },
    /// A tensor operation failed inside candle. (Not a `#[source]`: the message is already in
    /// the text, and `{:#}` would print it twice.)
    #[error("tensor error: {0}")]
    Candle(candle_core::Error),
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Candle(e)
    }
}

/// Result with gatekit's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The TOML parser's error, printed as one line (the parser's own `Display` draws a
/// multi-line snippet of the file), with what it was parsing as a prefix (`[adapt]: `). The
/// parser's error itself is not kept as a `source`: `{:#}` would print its snippet after the
/// line.
#[derive(Debug)]
pub struct TomlError {
    line: String,
}

/// serde's "unknown field `stepz`, expected one of `model`, `steps`, …" (a line of every
/// valid key) becomes "unknown field `stepz`; did you mean `steps`?" when one key is a likely
/// typo of it (the same for an unknown variant); otherwise the message is kept whole.
fn with_suggestion(message: &str) -> String {
    if !(message.starts_with("unknown field `") || message.starts_with("unknown variant `")) {
        return message.to_string();
    }
    // The backquoted names: the unknown one first, then the valid ones.
    let names: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    let Some((word, valid)) = names.split_first() else {
        return message.to_string();
    };
    match closest(word, valid.iter().copied()) {
        Some(c) => {
            // "unknown field `word`": up to the backquote that closes the word.
            let kind = message.split('`').next().unwrap_or_default();
            format!("{kind}`{word}`; did you mean `{c}`?")
        }
        None => message.to_string(),
    }
}

impl std::fmt::Display for TomlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line)
    }
}

impl std::error::Error for TomlError {}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A TOML error in `origin` whose `text` was being parsed: `file:line:column: message`.
    pub fn toml(origin: &std::path::Path, text: &str, e: toml::de::Error) -> Self {
        let location = e.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!(":{line}:{column}")
        });
        let path = PathBuf::from(format!(
            "{}{}",
            origin.display(),
            location.unwrap_or_default()
        ));
        Self::toml_at(path, "", e)
    }

    /// A TOML error in a part (`prefix`, e.g. `[adapt]: `) of `path` with no position.
    pub fn toml_at(path: impl Into<PathBuf>, prefix: &str, e: toml::de::Error) -> Self {
        let message = e.message().trim().replace('\n', " ");
        let line = format!("{prefix}{}", with_suggestion(&message));
        Error::Toml {
            path: path.into(),
            source: TomlError { line },
        }
    }

    /// An encoding error while writing `path`.
    pub fn encode(
        path: impl Into<PathBuf>,
        what: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Encode {
            path: path.into(),
            what,
            source: Box::new(source),
        }
    }

    /// A JSON parse error in `path`; `what` says what the text should have been.
    pub fn json(
        path: impl Into<PathBuf>,
        what: impl Into<String>,
        source: serde_json::Error,
    ) -> Self {
        Error::Json {
            path: path.into(),
            what: what.into(),
            source,
        }
    }

    /// A configuration error for `field` in `origin`.
    pub fn config(
        origin: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Config {
            origin: origin.into(),
            field: field.into(),
            message: message.into(),
        }
    }

    /// A parameter error for `param` of task `task`.
    pub fn param(
        task: impl Into<String>,
        param: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Param {
            task: task.into(),
            param: param.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CLI prints errors with `{:#}` (the chain of sources): a candle error's message
    /// appears once, not as "tensor error: X: X".
    #[test]
    fn candle_errors_print_their_message_once() {
        let e = Error::from(candle_core::Error::Msg("shape mismatch".into()));
        assert_eq!(
            format!("{:#}", anyhow::Error::from(e)),
            "tensor error: shape mismatch"
        );
    }
}
