//! Fingerprints of the data files a run reads: size and SHA-256 of the bytes, recorded when the
//! run is created, so that resuming or evaluating it on different data is caught instead of
//! silently mixing two data sets (a file replaced by another of the same shape passes every
//! shape check).
//!
//! A fingerprint names its file by a key that is the same wherever the run is opened: the
//! path as `config.toml` holds it for a `tensors` file, `<dataset>/<standard name>` for an IDX
//! file (whichever data folder, file name variant or compression it was read from). IDX files
//! are fingerprinted over their decompressed bytes, so MNIST's fingerprints are the published
//! checksums ([`crate::data::MNIST_FILES`]).

use super::mnist::{ImageSet, Mnist};
use super::{IMAGES_MAGIC, LABELS_MAGIC};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// One data file as a run read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataFingerprint {
    /// Which file: the same key wherever the run is opened (see the module doc).
    pub file: String,
    /// Where it was read from, for messages (may differ between machines).
    pub path: PathBuf,
    /// Its size in bytes (decompressed, for IDX files).
    pub bytes: u64,
    /// SHA-256 of those bytes, lowercase hex.
    pub sha256: String,
}

impl DataFingerprint {
    /// Whether the content is the same (size and hash; the path may differ).
    pub fn same_content(&self, other: &DataFingerprint) -> bool {
        self.bytes == other.bytes && self.sha256 == other.sha256
    }

    /// `N bytes, sha256 0123456789abcdef…`: short enough for a one-line message, long enough
    /// to tell two files apart by eye.
    pub fn describe(&self) -> String {
        format!(
            "{} bytes, sha256 {}…",
            self.bytes,
            &self.sha256[..16.min(self.sha256.len())]
        )
    }
}

/// A data file whose content differs from what the run recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataChange {
    /// The commit's step when the change was found.
    pub step: usize,
    /// What the run had recorded.
    pub before: DataFingerprint,
    /// What the file holds now.
    pub after: DataFingerprint,
}

impl DataChange {
    /// One line naming the file and both fingerprints.
    pub fn describe(&self) -> String {
        format!(
            "{}{} changed since the run recorded it: recorded {}, now {}",
            self.after.path.display(),
            self.key_note(),
            self.before.describe(),
            self.after.describe()
        )
    }

    /// ` (mnist/t10k-labels-idx1-ubyte)`: the file's key when it is not its path (IDX files),
    /// else nothing.
    pub fn key_note(&self) -> String {
        if self.before.file == self.after.path.display().to_string() {
            String::new()
        } else {
            format!(" ({})", self.before.file)
        }
    }
}

/// The recorded fingerprints whose file now holds other bytes, paired with what it holds now;
/// `step` is the commit they are found at. Files recorded but not read now (or read now but
/// not recorded) are not changes of content: the task set, which names the files, is
/// `config.toml` and cannot change.
pub fn changed(
    recorded: &[DataFingerprint],
    now: &[DataFingerprint],
    step: usize,
) -> Vec<DataChange> {
    recorded
        .iter()
        .filter_map(|before| {
            let after = now.iter().find(|n| n.file == before.file)?;
            (!before.same_content(after)).then(|| DataChange {
                step,
                before: before.clone(),
                after: after.clone(),
            })
        })
        .collect()
}

/// Fingerprint of a file's bytes as they are on disk, read in blocks (a `tensors` file may be
/// larger than memory). `key` names it in the run.
pub fn fingerprint_file(key: &str, path: &Path) -> Result<DataFingerprint> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(path, e)),
        };
        hash.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(DataFingerprint {
        file: key.to_string(),
        path: path.to_path_buf(),
        bytes,
        sha256: hex(&hash.finalize()),
    })
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fingerprints of the four IDX files of a decoded MNIST-layout dataset, computed from the
/// decoded data (the header is rebuilt: the reader accepts a file only when it is exactly
/// header plus data), so they describe what the tasks read and equal the checksums of the
/// decompressed files. `dataset` is the folder's name in the task set and `paths` the files
/// it was read from (train images, train labels, test images, test labels).
///
/// Computed once per process for each loaded dataset: every image task of a run shares it.
pub fn fingerprint_mnist(
    dataset: &str,
    data: &Arc<Mnist>,
    paths: &[PathBuf; 4],
) -> Vec<DataFingerprint> {
    type Hashes = HashMap<usize, [(u64, String); 4]>;
    static CACHE: OnceLock<Mutex<Hashes>> = OnceLock::new();
    // The loaded dataset lives in load_mnist's cache for the whole process, so its address
    // identifies it.
    let key = Arc::as_ptr(data) as usize;
    let hashes = {
        let mut map = CACHE
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.entry(key)
            .or_insert_with(|| {
                let [a, b] = idx_hashes(&data.train);
                let [c, d] = idx_hashes(&data.test);
                [a, b, c, d]
            })
            .clone()
    };
    super::MNIST_FILES
        .iter()
        .zip(paths)
        .zip(hashes)
        .map(|((f, path), (bytes, sha256))| DataFingerprint {
            file: format!("{dataset}/{}", f.name),
            path: path.clone(),
            bytes,
            sha256,
        })
        .collect()
}

/// Size and SHA-256 of the IDX image file and the IDX label file that decode to `set`.
fn idx_hashes(set: &ImageSet) -> [(u64, String); 2] {
    let one = |magic: u32, dims: &[usize], data: &[u8]| {
        let mut hash = Sha256::new();
        hash.update(magic.to_be_bytes());
        for &d in dims {
            hash.update((d as u32).to_be_bytes());
        }
        hash.update(data);
        let bytes = 4 + 4 * dims.len() as u64 + data.len() as u64;
        (bytes, hex(&hash.finalize()))
    };
    [
        one(IMAGES_MAGIC, &[set.len(), set.rows, set.cols], &set.images),
        one(LABELS_MAGIC, &[set.len()], &set.labels),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(file: &str, bytes: u64, sha: &str) -> DataFingerprint {
        DataFingerprint {
            file: file.into(),
            path: PathBuf::from(format!("/d/{file}")),
            bytes,
            sha256: sha.into(),
        }
    }

    #[test]
    fn changes_are_content_changes_of_recorded_files() {
        let recorded = [fp("a", 10, "aa"), fp("b", 20, "bb")];
        // b's content changed, a moved (same content, other path), c is new.
        let mut moved = fp("a", 10, "aa");
        moved.path = PathBuf::from("/elsewhere/a");
        let now = [moved, fp("b", 20, "bc"), fp("c", 1, "cc")];
        let changes = changed(&recorded, &now, 30);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].step, 30);
        assert_eq!(changes[0].before.sha256, "bb");
        assert_eq!(changes[0].after.sha256, "bc");
        assert!(changes[0].describe().starts_with("/d/b (b) changed"));
        assert!(changed(&recorded, &recorded, 0).is_empty());
        // A different size with the same hash is still a change.
        assert_eq!(changed(&recorded, &[fp("a", 11, "aa")], 0).len(), 1);
    }

    #[test]
    fn file_fingerprint_is_size_and_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bin");
        std::fs::write(&p, b"abc").unwrap();
        let f = fingerprint_file("x.bin", &p).unwrap();
        assert_eq!(f.bytes, 3);
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            f.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(fingerprint_file("y", &dir.path().join("missing")).is_err());
    }

    #[test]
    fn idx_hashes_equal_the_file_checksums() {
        let set = ImageSet {
            images: (0..2 * 2 * 3).map(|i| i as u8).collect(),
            labels: vec![3, 7],
            rows: 2,
            cols: 3,
        };
        let mut images = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3];
        images.extend(&set.images);
        let labels = [0, 0, 8, 1, 0, 0, 0, 2, 3, 7];
        let [(ib, ih), (lb, lh)] = idx_hashes(&set);
        assert_eq!(ib, images.len() as u64);
        assert_eq!(ih, hex(&Sha256::digest(&images)));
        assert_eq!(lb, labels.len() as u64);
        assert_eq!(lh, hex(&Sha256::digest(labels)));
    }
}
