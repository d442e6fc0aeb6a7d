//! The seed list of `gtk train --seeds`: a half-open range `0..5`, an inclusive one `0..=4`,
//! or a comma-separated list `0,3,7`.

use crate::error::{Error, Result};

/// Most seeds in one sweep: more is almost surely a typo (`0..50000`).
pub const MAX_SEEDS: usize = 1000;

fn bad(message: String) -> Error {
    Error::Config {
        origin: "command line".into(),
        field: "--seeds".into(),
        message,
    }
}

fn number(text: &str, whole: &str) -> Result<u64> {
    let t = text.trim();
    t.parse::<u64>().map_err(|_| {
        bad(format!(
            "`{whole}`: `{t}` is not a seed (a whole number ≥ 0); write a range like 0..5 or a list like 0,3,7"
        ))
    })
}

/// Parses a seed list; the seeds come back in the order given, without repeats.
pub fn parse_seeds(text: &str) -> Result<Vec<u64>> {
    let whole = text.trim();
    if whole.is_empty() {
        return Err(bad(
            "is empty; write a range like 0..5 (seeds 0 to 4) or a list like 0,3,7".into(),
        ));
    }
    let seeds: Vec<u64> = if let Some((a, b)) = whole.split_once("..") {
        let (inclusive, b) = match b.strip_prefix('=') {
            Some(b) => (true, b),
            None => (false, b),
        };
        let (a, b) = (number(a, whole)?, number(b, whole)?);
        let end = if inclusive { b.checked_add(1) } else { Some(b) };
        let end = end.ok_or_else(|| bad(format!("`{whole}`: the range is too large")))?;
        if end <= a {
            return Err(bad(format!(
                "`{whole}` holds no seed (a..b is a ≤ seed < b); write e.g. {a}..{}",
                a.saturating_add(5)
            )));
        }
        if end - a > MAX_SEEDS as u64 {
            return Err(bad(format!(
                "`{whole}` holds {} seeds; at most {MAX_SEEDS} in one sweep",
                end - a
            )));
        }
        (a..end).collect()
    } else {
        let mut out = Vec::new();
        for part in whole.split(',') {
            if part.trim().is_empty() {
                return Err(bad(format!(
                    "`{whole}` has an empty item; write seeds separated by single commas, like 0,3,7"
                )));
            }
            let s = number(part, whole)?;
            if out.contains(&s) {
                return Err(bad(format!("`{whole}` lists seed {s} twice")));
            }
            out.push(s);
        }
        if out.len() > MAX_SEEDS {
            return Err(bad(format!(
                "lists {} seeds; at most {MAX_SEEDS} in one sweep",
                out.len()
            )));
        }
        out
    };
    Ok(seeds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_lists() {
        assert_eq!(parse_seeds("0..5").unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!(parse_seeds("3..=5").unwrap(), vec![3, 4, 5]);
        assert_eq!(parse_seeds(" 0, 3,7 ").unwrap(), vec![0, 3, 7]);
        assert_eq!(parse_seeds("9").unwrap(), vec![9]);
    }

    #[test]
    fn bad_lists_name_the_problem() {
        for (text, needle) in [
            ("", "is empty"),
            ("  ", "is empty"),
            ("5..5", "holds no seed"),
            ("5..2", "holds no seed"),
            ("0..x", "`x` is not a seed"),
            ("0,,3", "empty item"),
            ("0,3,", "empty item"),
            ("1,-2", "`-2` is not a seed"),
            ("1,2,1", "seed 1 twice"),
            ("0..5000", "at most 1000"),
            ("a-b", "`a-b` is not a seed"),
        ] {
            let e = parse_seeds(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.starts_with("command line: `--seeds`"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
