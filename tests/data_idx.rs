//! The IDX reader against the `mnist` crate on real MNIST, and its errors on damaged files.

mod common;

use flate2::Compression;
use flate2::write::GzEncoder;
use gatekit::Error;
use gatekit::data::{
    IMAGES_MAGIC, ImageSet, LABELS_MAGIC, load_mnist, read_idx, read_mnist, resolve_data_dir,
};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

const TRAIN_COUNTS: [usize; 10] = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
const TEST_COUNTS: [usize; 10] = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];
const NAMES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

fn counts(labels: &[u8]) -> [usize; 10] {
    let mut c = [0; 10];
    for &l in labels {
        c[l as usize] += 1;
    }
    c
}

fn real_mnist() -> Option<PathBuf> {
    common::shared_data().map(|d| d.join("mnist"))
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// An IDX file: `magic`, then `dims`, then `data`.
fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// `n` images of 4x3 whose pixels encode (image, position), and labels `i % 10`.
fn small_split(n: u32) -> (Vec<u8>, Vec<u8>) {
    let pixels: Vec<u8> = (0..n * 12).map(|i| (i * 7 % 251) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    (
        idx(IMAGES_MAGIC, &[n, 4, 3], &pixels),
        idx(LABELS_MAGIC, &[n], &labels),
    )
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Asserts a data error whose text names `file` and contains every needle.
fn assert_data_err<T: std::fmt::Debug>(result: gatekit::Result<T>, file: &str, needles: &[&str]) {
    let err = result.expect_err("expected an error");
    assert!(
        matches!(err, Error::Data { .. }),
        "not a data error: {err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(file), "`{file}` not named in: {text}");
    for n in needles {
        assert!(text.contains(n), "`{n}` missing from: {text}");
    }
}

#[test]
fn parity_with_the_mnist_crate_on_real_mnist() {
    let Some(src) = real_mnist() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for name in NAMES {
        let bytes = gunzip(&src.join(format!("{name}.gz")));
        write(tmp.path(), name, &bytes);
    }
    let reference = mnist::MnistBuilder::new()
        .base_path(tmp.path().to_str().unwrap())
        .label_format_digit()
        .training_set_length(60_000)
        .validation_set_length(0)
        .test_set_length(10_000)
        .finalize();

    let start = Instant::now();
    let ours = read_mnist(&src).unwrap();
    eprintln!(
        "decoded 70000 gzip MNIST images in {:.0} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!((ours.train.len(), ours.test.len()), (60_000, 10_000));
    assert_eq!((ours.train.rows, ours.train.cols), (28, 28));
    assert_eq!((ours.test.rows, ours.test.cols), (28, 28));
    assert_eq!(ours.train.images.len(), 60_000 * 784);
    // assert! rather than assert_eq!: a failure should not print 47 MB.
    assert!(
        ours.train.images == reference.trn_img,
        "train images differ"
    );
    assert!(
        ours.train.labels == reference.trn_lbl,
        "train labels differ"
    );
    assert!(ours.test.images == reference.tst_img, "test images differ");
    assert!(ours.test.labels == reference.tst_lbl, "test labels differ");
    assert_eq!(counts(&ours.train.labels), TRAIN_COUNTS);
    assert_eq!(counts(&ours.test.labels), TEST_COUNTS);
    assert_eq!(ours.train.image(59_999), &reference.trn_img[59_999 * 784..]);
    let ink: u64 = ours.test.image(0).iter().map(|&p| u64::from(p)).sum();
    assert!(ink > 10_000, "first test image is blank: {ink}");

    // The uncompressed copies (what the mnist crate read) decode identically.
    let start = Instant::now();
    let plain = read_mnist(tmp.path()).unwrap();
    eprintln!(
        "decoded 70000 plain MNIST images in {:.0} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    assert!(plain == ours, "plain and gzip files decode differently");
}

#[test]
fn load_mnist_shares_one_copy_per_folder() {
    let Some(src) = real_mnist() else { return };
    let a = load_mnist(&src).unwrap();
    let b = load_mnist(&src).unwrap();
    assert!(Arc::ptr_eq(&a, &b), "second load decoded again");
    // Another spelling of the same folder is the same canonical path, hence the same copy.
    let other = src.join("..").join("mnist");
    let c = load_mnist(&other).unwrap();
    assert!(Arc::ptr_eq(&a, &c), "same folder, different spelling");
    assert_eq!(a.train.len(), 60_000);
    assert_eq!(counts(&c.train.labels), TRAIN_COUNTS);
}

#[test]
fn other_naming_scheme_and_uncompressed_files_load() {
    let tmp = tempfile::tempdir().unwrap();
    let (train_img, train_lbl) = small_split(7);
    let (test_img, test_lbl) = small_split(3);
    // Dotted names, a mix of plain and gzip.
    write(tmp.path(), "train-images.idx3-ubyte", &train_img);
    write(tmp.path(), "train-labels.idx1-ubyte.gz", &gzip(&train_lbl));
    write(tmp.path(), "t10k-images.idx3-ubyte.gz", &gzip(&test_img));
    write(tmp.path(), "t10k-labels.idx1-ubyte", &test_lbl);
    let m = read_mnist(tmp.path()).unwrap();
    assert_eq!((m.train.len(), m.train.rows, m.train.cols), (7, 4, 3));
    assert_eq!(m.test.len(), 3);
    assert_eq!(m.train.images, &train_img[16..]);
    assert_eq!(m.train.labels, vec![0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(m.test.labels, vec![0, 1, 2]);
    assert_eq!(m.train.image(2), &train_img[16 + 24..16 + 36]);
    assert_eq!(m.test.image(1), &test_img[16 + 12..16 + 24]);

    // Standard names, all plain.
    let std_dir = tempfile::tempdir().unwrap();
    for (name, bytes) in NAMES
        .iter()
        .zip([&train_img, &train_lbl, &test_img, &test_lbl])
    {
        write(std_dir.path(), name, bytes);
    }
    assert!(read_mnist(std_dir.path()).unwrap() == m);

    // Zero records is a valid (empty) file.
    let empty = write(tmp.path(), "empty", &idx(LABELS_MAGIC, &[0], &[]));
    assert!(read_idx(&empty, LABELS_MAGIC).unwrap().data.is_empty());
}

#[test]
fn wrong_magic_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, labels) = small_split(5);
    // A label file where images are expected.
    let path = write(tmp.path(), "labels-as-images", &labels);
    assert_data_err(
        read_idx(&path, IMAGES_MAGIC),
        "labels-as-images",
        &["bad magic number 0x00000801", "expected 0x00000803"],
    );
    // Not IDX at all.
    let path = write(tmp.path(), "zip-file", b"PK\x03\x04 this is a zip");
    assert_data_err(
        read_idx(&path, LABELS_MAGIC),
        "zip-file",
        &["not an IDX file"],
    );
    // IDX, but f32 elements.
    let path = write(tmp.path(), "floats", &idx(0x0000_0D01, &[1], &[0; 4]));
    assert_data_err(
        read_idx(&path, LABELS_MAGIC),
        "floats",
        &["element type 0x0d"],
    );
}

#[test]
fn truncated_files_are_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, _) = small_split(5);
    let short = write(tmp.path(), "short-images", &images[..images.len() - 1]);
    assert_data_err(
        read_idx(&short, IMAGES_MAGIC),
        "short-images",
        &["truncated", "5 records of 4x3 (60 bytes)", "59 bytes"],
    );
    let header = write(tmp.path(), "short-header", &images[..10]);
    assert_data_err(
        read_idx(&header, IMAGES_MAGIC),
        "short-header",
        &["truncated", "header"],
    );
    let empty = write(tmp.path(), "empty-file", &[]);
    assert_data_err(read_idx(&empty, IMAGES_MAGIC), "empty-file", &["truncated"]);
    // A gzip stream cut short.
    let gz = gzip(&images);
    let cut = write(tmp.path(), "cut.gz", &gz[..gz.len() / 2]);
    assert_data_err(read_idx(&cut, IMAGES_MAGIC), "cut.gz", &["gzip"]);
    // Compressed but the IDX inside is short.
    let inner = write(tmp.path(), "inner.gz", &gzip(&images[..40]));
    assert_data_err(
        read_idx(&inner, IMAGES_MAGIC),
        "inner.gz",
        &["truncated", "only 24 bytes follow"],
    );
    // Trailing bytes mean the header does not describe the file.
    let mut long = images.clone();
    long.push(0);
    let long = write(tmp.path(), "long-images", &long);
    assert_data_err(
        read_idx(&long, IMAGES_MAGIC),
        "long-images",
        &["longer than its header declares"],
    );
    // A header claiming an enormous file is rejected without allocating it.
    let huge = write(
        tmp.path(),
        "huge",
        &idx(IMAGES_MAGIC, &[u32::MAX, u32::MAX, u32::MAX], &[1, 2, 3]),
    );
    assert_data_err(read_idx(&huge, IMAGES_MAGIC), "huge", &["overflow"]);
    let big = write(
        tmp.path(),
        "big",
        &idx(IMAGES_MAGIC, &[u32::MAX, 28, 28], &[1, 2, 3]),
    );
    assert_data_err(
        read_idx(&big, IMAGES_MAGIC),
        "big",
        &["truncated", "only 3 bytes follow"],
    );
}

#[test]
fn image_label_count_mismatch_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, _) = small_split(5);
    let (_, labels) = small_split(4);
    let img = write(tmp.path(), "train-images-idx3-ubyte", &images);
    let lbl = write(tmp.path(), "train-labels-idx1-ubyte", &labels);
    assert_data_err(
        ImageSet::load(&img, &lbl),
        "train-labels-idx1-ubyte",
        &["4 labels", "5 images"],
    );
    let (test_img, test_lbl) = small_split(2);
    write(tmp.path(), "t10k-images-idx3-ubyte", &test_img);
    write(tmp.path(), "t10k-labels-idx1-ubyte", &test_lbl);
    assert_data_err(
        read_mnist(tmp.path()),
        "train-labels-idx1-ubyte",
        &["4 labels", "5 images"],
    );
}

#[test]
fn a_gz_name_on_a_plain_file_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, _) = small_split(5);
    let path = write(tmp.path(), "train-images-idx3-ubyte.gz", &images);
    assert_data_err(
        read_idx(&path, IMAGES_MAGIC),
        "train-images-idx3-ubyte.gz",
        &["named .gz but not gzip"],
    );
}

#[test]
fn labels_outside_0_to_9_are_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, _) = small_split(3);
    write(tmp.path(), "train-images-idx3-ubyte", &images);
    write(
        tmp.path(),
        "train-labels-idx1-ubyte",
        &idx(LABELS_MAGIC, &[3], &[1, 12, 3]),
    );
    write(tmp.path(), "t10k-images-idx3-ubyte", &images);
    write(
        tmp.path(),
        "t10k-labels-idx1-ubyte",
        &idx(LABELS_MAGIC, &[3], &[1, 2, 3]),
    );
    assert_data_err(
        read_mnist(tmp.path()),
        "train-labels-idx1-ubyte",
        &["label 12 of record 1"],
    );
}

#[test]
fn missing_files_name_the_fetch_command() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mnist");
    let expect = format!("gtk data fetch mnist --data-dir {}", tmp.path().display());
    assert_data_err(load_mnist(&dir), "no such folder", &[&expect]);
    std::fs::create_dir(&dir).unwrap();
    let (images, labels) = small_split(2);
    write(&dir, "train-images-idx3-ubyte", &images);
    write(&dir, "train-labels-idx1-ubyte", &labels);
    write(&dir, "t10k-images.idx3-ubyte.gz", &gzip(&images));
    assert_data_err(
        load_mnist(&dir),
        "missing t10k-labels-idx1-ubyte[.gz]",
        &[&expect],
    );
    // Once the last file is there, the same folder loads (failures are not cached).
    write(&dir, "t10k-labels-idx1-ubyte", &labels);
    assert_eq!(load_mnist(&dir).unwrap().test.len(), 2);
}

#[test]
fn a_data_dir_flag_wins() {
    let flag = Path::new("/some/where");
    assert_eq!(resolve_data_dir(Some(flag)), flag);
    // Without a flag there is always an answer (the env-based cases run in data_fetch.rs, in
    // a child process, since tests share this process's environment).
    assert!(!resolve_data_dir(None).as_os_str().is_empty());
}
