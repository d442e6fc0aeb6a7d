//! "Did you mean …?" for a misspelt key, parameter or kind: the closest known name by edit
//! distance, when it is close enough to be a likely typo (a wrong guess is worse than none).

/// The candidate closest to `word` (ignoring case, `-` versus `_`), if it is within about a
/// third of the word's length in single-character edits.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let norm = |s: &str| s.to_lowercase().replace('-', "_");
    let w = norm(word);
    let limit = (w.chars().count() / 3).max(1);
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        let d = distance(&w, &norm(c));
        if d <= limit && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// ` did you mean `X`?` for [`closest`], or nothing.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    closest(word, candidates).map_or_else(String::new, |c| format!("did you mean `{c}`?"))
}

/// Levenshtein distance (insertions, deletions, substitutions) over characters; a swap of two
/// neighbours counts as one edit, as it is the commonest typo.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j]: distance of a[..i] and b[..j]; three rows are enough for the swap.
    let mut prev2: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut row = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(row[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            row[j] = d;
        }
        prev2 = std::mem::replace(&mut prev, row);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        assert_eq!(distance("steps", "steps"), 0);
        assert_eq!(distance("stepz", "steps"), 1);
        assert_eq!(distance("step", "steps"), 1);
        assert_eq!(distance("backround", "background"), 1);
        assert_eq!(distance("nosie", "noise"), 1, "a swap is one edit");
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggests_only_close_names() {
        let keys = ["steps", "seed", "batch_size", "lr", "mask_lr"];
        assert_eq!(closest("stepz", keys), Some("steps"));
        assert_eq!(closest("batch-size", keys), Some("batch_size"));
        assert_eq!(closest("BATCH_SIZE", keys), Some("batch_size"));
        assert_eq!(closest("mask_lt", keys), Some("mask_lr"));
        assert_eq!(closest("colour", keys), None);
        assert_eq!(
            closest("zz", keys),
            None,
            "two edits away from `lr` is no typo of it"
        );
        assert_eq!(did_you_mean("sed", keys), "did you mean `seed`?");
        assert_eq!(did_you_mean("xyz", keys), "");
    }
}
