//! Datasets: the IDX file format (MNIST), where data lives, and fetching it.
//!
//! Image tasks need real data that is too large to ship in the binary and must be identical on
//! every machine, so this module owns the whole path from a public mirror to decoded pixels:
//! one data folder per user (found by [`resolve_data_dir`]), downloads checked against the
//! published checksums ([`fetch_mnist`], [`verify_mnist`]), and a strict reader that turns a
//! damaged file into an error naming it ([`idx`]) instead of a panic or silently wrong training.

pub mod fetch;
pub mod fingerprint;
pub mod idx;
pub mod mnist;

pub use fetch::{FetchEvent, MNIST_MIRRORS, VerifiedFile, fetch_mnist, sha256_hex, verify_mnist};
pub use fingerprint::{DataChange, DataFingerprint};
pub use idx::{IMAGES_MAGIC, Idx, IdxHeader, LABELS_MAGIC, read_idx};
pub use mnist::{
    ImageSet, MNIST_CLASSES, MNIST_FILES, Mnist, MnistFile, fetch_command, load_mnist, mnist_dir,
    mnist_paths, read_mnist,
};

use std::path::{Path, PathBuf};

/// Environment variable naming the data folder when no flag does.
pub const DATA_ENV: &str = "GATEKIT_DATA";

/// `flag`, else $GATEKIT_DATA, else a per-user cache folder ($XDG_CACHE_HOME/gatekit or
/// ~/.cache/gatekit).
///
/// A per-user cache rather than the working directory, so data fetched once serves every run
/// and checkout. Empty values count as unset; with no home folder at all (rare: some service
/// accounts) the system temp folder's `gatekit` is used, so there is always an answer.
pub fn resolve_data_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(dir) = flag {
        return dir.to_path_buf();
    }
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var(DATA_ENV) {
        return PathBuf::from(dir);
    }
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(cache) = var("XDG_CACHE_HOME").map(PathBuf::from)
        && cache.is_absolute()
    {
        return cache.join("gatekit");
    }
    if let Some(home) = var("HOME").or_else(|| var("USERPROFILE")) {
        return PathBuf::from(home).join(".cache").join("gatekit");
    }
    std::env::temp_dir().join("gatekit")
}
