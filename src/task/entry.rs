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

/// Checks that `name` can name files on Linux, macOS and Windows: 1 to [`MAX_NAME_LEN`]
/// ASCII letters, digits, `-` or `_`, and not a name Windows reserves (`CON`, `NUL`, `COM1`, …).
/// The error says what is wrong and what is valid.
pub fn check_portable_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "is {} characters long; at most {MAX_NAME_LEN} are allowed",
            name.chars().count()
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("must be letters, digits, '-' or '_' only".into());
    }
    let upper = name.to_ascii_uppercase();
    let reserved = ["CON", "PRN", "AUX", "NUL"].contains(&upper.as_str())
        || ((upper.starts_with("COM") || upper.starts_with("LPT"))
            && upper.len() == 4
            && upper.as_bytes()[3].is_ascii_digit());
    if reserved {
        return Err("is a device name reserved by Windows; choose another".into());
    }
    Ok(())
}
