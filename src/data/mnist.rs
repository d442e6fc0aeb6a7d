//! MNIST-layout datasets: four IDX files (train/test × images/labels) in one folder.
//!
//! Every image task of a run reads the same 55 MB, so [`load_mnist`] decodes a folder once per
//! process and hands out one shared copy. The files are found under either naming scheme in
//! use (`train-images-idx3-ubyte` and `train-images.idx3-ubyte`), plain or gzip-compressed, so a
//! folder from any mirror or older tool works without renaming.

use super::idx::{IMAGES_MAGIC, LABELS_MAGIC, read_idx};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// One split of an image dataset: u8 pixels row-major `[n, rows, cols]`, labels `[n]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSet {
    /// `n * rows * cols` pixels, image after image, each row-major.
    pub images: Vec<u8>,
    /// One class label per image.
    pub labels: Vec<u8>,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
}

impl ImageSet {
    /// Number of images (and labels).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i`, `rows * cols` bytes, row-major.
    ///
    /// # Panics
    /// If `i >= self.len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        let size = self.rows * self.cols;
        &self.images[i * size..(i + 1) * size]
    }

    /// Reads one split from an IDX image file and an IDX label file, checking that they hold
    /// the same number of records.
    pub fn load(images: &Path, labels: &Path) -> Result<ImageSet> {
        let img = read_idx(images, IMAGES_MAGIC)?;
        let lbl = read_idx(labels, LABELS_MAGIC)?;
        let &[n, rows, cols] = img.dims.as_slice() else {
            // read_idx checked the magic, which fixes three dimensions.
            return Err(Error::Data {
                path: images.to_path_buf(),
                message: format!("expected 3 dimensions, found {:?}", img.dims),
            });
        };
        if lbl.data.len() != n {
            return Err(Error::Data {
                path: labels.to_path_buf(),
                message: format!(
                    "holds {} labels but {} holds {n} images; the two files must match",
                    lbl.data.len(),
                    images.display()
                ),
            });
        }
        Ok(ImageSet {
            images: img.data,
            labels: lbl.data,
            rows,
            cols,
        })
    }
}

/// MNIST-layout dataset: train and test splits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mnist {
    /// The training split (60 000 images for MNIST).
    pub train: ImageSet,
    /// The test split (10 000 images for MNIST).
    pub test: ImageSet,
}

/// One of the four MNIST files: its standard name and what its decompressed content must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MnistFile {
    /// Standard name without `.gz`, e.g. `train-images-idx3-ubyte`.
    pub name: &'static str,
    /// Lowercase hex sha256 of the decompressed file.
    pub sha256: &'static str,
    /// IDX magic number ([`IMAGES_MAGIC`] or [`LABELS_MAGIC`]).
    pub magic: u32,
    /// Number of records.
    pub records: usize,
}

/// The four MNIST files with the checksums of the published dataset.
pub const MNIST_FILES: [MnistFile; 4] = [
    MnistFile {
        name: "train-images-idx3-ubyte",
        sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        magic: IMAGES_MAGIC,
        records: 60_000,
    },
    MnistFile {
        name: "train-labels-idx1-ubyte",
        sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        magic: LABELS_MAGIC,
        records: 60_000,
    },
    MnistFile {
        name: "t10k-images-idx3-ubyte",
        sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        magic: IMAGES_MAGIC,
        records: 10_000,
    },
    MnistFile {
        name: "t10k-labels-idx1-ubyte",
        sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        magic: LABELS_MAGIC,
        records: 10_000,
    },
];

/// Number of classes (digits) in MNIST; labels are `0..MNIST_CLASSES`.
pub const MNIST_CLASSES: usize = 10;

/// The MNIST folder inside a data folder: `<data_dir>/mnist`.
pub fn mnist_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("mnist")
}

/// The names a file of standard name `name` may have, in the order they are looked for: the
/// standard name, then the dotted one (`train-images.idx3-ubyte`), each plain then `.gz`.
pub fn idx_file_names(name: &str) -> Vec<String> {
    let dotted = name.replacen("-idx", ".idx", 1);
    let mut names = vec![name.to_string(), format!("{name}.gz")];
    if dotted != name {
        names.push(dotted.clone());
        names.push(format!("{dotted}.gz"));
    }
    names
}

/// The file in `dir` holding standard file `name` under any accepted name, if there is one.
pub fn find_idx_file(dir: &Path, name: &str) -> Option<PathBuf> {
    idx_file_names(name)
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// Why none of the names of standard file `name` in `dir` is a readable file although one of
/// them exists: a folder, a symlink loop or a dangling link (`None`: nothing there, it is
/// missing).
pub fn not_a_file(dir: &Path, name: &str) -> Option<String> {
    idx_file_names(name).into_iter().find_map(|n| {
        let p = dir.join(n);
        // symlink_metadata succeeds for anything with this name, links included.
        std::fs::symlink_metadata(&p).ok()?;
        Some(match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => format!("{}: is a folder, not a data file", p.display()),
            Ok(_) => format!("{}: is not a regular file", p.display()),
            Err(e) => format!("{}: cannot be opened: {e}", p.display()),
        })
    })
}

/// The command that fetches MNIST into the folder `dir` (`<data dir>/mnist`), for error
/// messages: a missing dataset should tell the user how to get it.
pub fn fetch_command(dir: &Path) -> String {
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("mnist") => {
            let parent = dir
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            format!("gtk data fetch mnist --data-dir {}", shell_quote(parent))
        }
        _ => format!(
            "gtk data fetch mnist --data-dir DIR (installs into DIR/mnist; {} is not named mnist)",
            dir.display()
        ),
    }
}

/// `path` as a shell word: single-quoted when it holds anything beyond a safe set.
fn shell_quote(path: &Path) -> String {
    let s = path.display().to_string();
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+:,@%=~".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Locates the four files in `dir` (in [`MNIST_FILES`] order), or says which are missing and
/// how to fetch them.
pub fn mnist_paths(dir: &Path) -> Result<[PathBuf; 4]> {
    let found: Vec<Option<PathBuf>> = MNIST_FILES
        .iter()
        .map(|f| find_idx_file(dir, f.name))
        .collect();
    // Something there that is not a file (a folder, a symlink loop) is named, not "missing".
    if let Some(why) = MNIST_FILES
        .iter()
        .zip(&found)
        .filter(|(_, p)| p.is_none())
        .find_map(|(f, _)| not_a_file(dir, f.name))
    {
        return Err(Error::Data {
            path: dir.to_path_buf(),
            message: format!("MNIST unreadable: {why}"),
        });
    }
    let missing: Vec<String> = MNIST_FILES
        .iter()
        .zip(&found)
        .filter(|(_, p)| p.is_none())
        .map(|(f, _)| format!("{}[.gz]", f.name))
        .collect();
    if !missing.is_empty() {
        let what = if !dir.is_dir() {
            "MNIST not found (no such folder)".to_string()
        } else {
            format!("MNIST incomplete, missing {}", missing.join(", "))
        };
        return Err(Error::Data {
            path: dir.to_path_buf(),
            message: format!("{what}; fetch it with: {}", fetch_command(dir)),
        });
    }
    let paths: Vec<PathBuf> = found.into_iter().flatten().collect();
    paths.try_into().map_err(|_| Error::Data {
        path: dir.to_path_buf(),
        message: "internal: expected four MNIST files".into(),
    })
}

/// Reads the MNIST-layout folder `dir` without caching; [`load_mnist`] is the shared version.
///
/// Any record count is accepted (a subset of MNIST loads), but train and test must have the
/// same image size and every label must be a digit, since the image tasks rely on both.
pub fn read_mnist(dir: &Path) -> Result<Mnist> {
    let [train_images, train_labels, test_images, test_labels] = mnist_paths(dir)?;
    // The training images are 85% of the work; decoding them on a second thread hides the rest.
    let (train, test) = std::thread::scope(|s| {
        let train = s.spawn(|| ImageSet::load(&train_images, &train_labels));
        let test = ImageSet::load(&test_images, &test_labels);
        let train = train.join().unwrap_or_else(|_| {
            Err(Error::Data {
                path: train_images.clone(),
                message: "the decoding thread panicked".into(),
            })
        });
        (train, test)
    });
    let (train, test) = (train?, test?);
    if (train.rows, train.cols) != (test.rows, test.cols) {
        return Err(Error::Data {
            path: test_images,
            message: format!(
                "images are {}x{} but the training images are {}x{}",
                test.rows, test.cols, train.rows, train.cols
            ),
        });
    }
    for (set, path) in [(&train, &train_labels), (&test, &test_labels)] {
        if let Some(i) = set
            .labels
            .iter()
            .position(|&l| usize::from(l) >= MNIST_CLASSES)
        {
            return Err(Error::Data {
                path: path.clone(),
                message: format!(
                    "label {} of record {i} is not a digit 0-{}",
                    set.labels[i],
                    MNIST_CLASSES - 1
                ),
            });
        }
    }
    Ok(Mnist { train, test })
}

/// One slot per canonical folder; a slot's own lock makes concurrent first loads of the same
/// folder decode once, without blocking loads of other folders.
type Slot = Arc<Mutex<Option<Arc<Mnist>>>>;

fn cache() -> &'static Mutex<HashMap<PathBuf, Slot>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Slot>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Loads `dir` (a folder holding the four IDX files, e.g. DATA_DIR/mnist) once per process: a
/// second call with the same canonical path returns the same Arc (so every task shares one copy).
///
/// A failed load is not cached, so fetching the data and calling again works.
pub fn load_mnist(dir: &Path) -> Result<Arc<Mnist>> {
    let Ok(key) = dir.canonicalize() else {
        // Missing folder: `mnist_paths` words the error, with the fetch command.
        mnist_paths(dir)?;
        return Err(Error::Data {
            path: dir.to_path_buf(),
            message: "cannot resolve the folder's path".into(),
        });
    };
    let slot = {
        let mut map = cache().lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(map.entry(key).or_default())
    };
    let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(mnist) = guard.as_ref() {
        return Ok(Arc::clone(mnist));
    }
    let mnist = Arc::new(read_mnist(dir)?);
    *guard = Some(Arc::clone(&mnist));
    Ok(mnist)
}
