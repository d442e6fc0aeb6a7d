//! The seed list of `gtk train --seeds`: a half-open range `0..5`, an inclusive one `0..=4`,
//! a comma-separated list `0,3,7`, or a list of both (`0..3,7`).

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

/// Parses a seed list; the seeds come back in the order given, without repeats. Items are
/// separated by commas and each is a seed or a range, so `0..3,7` is 0, 1, 2, 7 (and a
/// problem is blamed on the item that has it, not on the text before a `..`).
pub fn parse_seeds(text: &str) -> Result<Vec<u64>> {
    let whole = text.trim();
    if whole.is_empty() {
        return Err(bad(
            "is empty; write a range like 0..5 (seeds 0 to 4) or a list like 0,3,7".into(),
        ));
    }
    let mut out: Vec<u64> = Vec::new();
    for part in whole.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(bad(format!(
                "`{whole}` has an empty item; write seeds separated by single commas, like 0,3,7"
            )));
        }
        let item: Vec<u64> = match part.split_once("..") {
            Some((a, b)) => {
                let (inclusive, b) = match b.strip_prefix('=') {
                    Some(b) => (true, b),
                    None => (false, b),
                };
                let (a, b) = (number(a, whole)?, number(b, whole)?);
                let end = if inclusive { b.checked_add(1) } else { Some(b) };
                let end = end.ok_or_else(|| bad(format!("`{part}`: the range is too large")))?;
                if end <= a {
                    return Err(bad(format!(
                        "`{part}` holds no seed (a..b is a ≤ seed < b); write e.g. {a}..{}",
                        a.saturating_add(5)
                    )));
                }
                if end - a > MAX_SEEDS as u64 {
                    return Err(bad(format!(
                        "`{part}` holds {} seeds; at most {MAX_SEEDS} in one sweep",
                        end - a
                    )));
                }
                (a..end).collect()
            }
            None => vec![number(part, whole)?],
        };
        for s in item {
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
    }
    Ok(out)
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
        assert_eq!(
            parse_seeds("0..3, 7,10..=11").unwrap(),
            vec![0, 1, 2, 7, 10, 11]
        );
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
            // A range after a list is an item of it: the repeat is named, not "0,1,0".
            ("0,1,0..3", "`0,1,0..3` lists seed 0 twice"),
            ("0..2,1..=1", "lists seed 1 twice"),
            ("0..0,5", "`0..0` holds no seed"),
        ] {
            let e = parse_seeds(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.starts_with("command line: `--seeds`"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
