//! One task of a task set as written (name, kind, parameters), and the rule for names that
//! end up in file names and tensor keys.

use super::registry::Params;

/// One task of a set, with checked parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEntry {
    /// Unique name (letters, digits, `-`, `_`): used in tensor keys and file names.
    pub name: String,
    /// Registered kind.
    pub kind: String,
    /// Parameters, defaults filled in.
    pub params: Params,
}

/// Longest task or run name: file names built from it (`<task>.onnx`, mask keys) stay far
/// below the 255-byte limit of Linux, macOS and Windows file systems.
pub const MAX_NAME_LEN: usize = 64;

/// Why a name cannot name files; its text says what is wrong and what is valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("must not be empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error("is {0} characters long; at most {MAX_NAME_LEN} are allowed")]
    TooLong(usize),
    /// The name has a character other than ASCII letters, digits, `-` and `_`.
    #[error("must be letters, digits, '-' or '_' only")]
    Characters,
    /// The name is a device name Windows reserves.
    #[error("is a device name reserved by Windows; choose another")]
    Reserved,
}

/// Checks that `name` can name files on Linux, macOS and Windows: 1 to [`MAX_NAME_LEN`]
/// ASCII letters, digits, `-` or `_`, and not a name Windows reserves (`CON`, `NUL`, `COM1`, …).
pub fn check_portable_name(name: &str) -> std::result::Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.chars().count()));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(NameError::Characters);
    }
    let upper = name.to_ascii_uppercase();
    let reserved = ["CON", "PRN", "AUX", "NUL"].contains(&upper.as_str())
        || ((upper.starts_with("COM") || upper.starts_with("LPT"))
            && upper.len() == 4
            && upper.as_bytes()[3].is_ascii_digit());
    if reserved {
        return Err(NameError::Reserved);
    }
    Ok(())
}
