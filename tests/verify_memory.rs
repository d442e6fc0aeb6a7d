//! `gtk data verify` hashes each file streaming: a file whose decompressed stream is far larger
//! than memory should hold (here ~450 MB of zeros, 0.5 MB compressed) is checked without
//! holding it. Alone in its own test binary so no other test moves the process's peak memory.

use flate2::Compression;
use flate2::write::GzEncoder;
use std::io::Write;

/// Peak resident memory of this process so far, in kB.
fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn verify_does_not_hold_the_decompressed_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mnist");
    std::fs::create_dir(&dir).unwrap();
    // MNIST's training-image header, its 47 MB of pixels and 400 MB of trailing bytes.
    let file = std::fs::File::create(dir.join("train-images-idx3-ubyte.gz")).unwrap();
    let mut gz = GzEncoder::new(std::io::BufWriter::new(file), Compression::fast());
    for word in [0x803u32, 60_000, 28, 28] {
        gz.write_all(&word.to_be_bytes()).unwrap();
    }
    let zeros = vec![0u8; 1 << 20];
    let total_mb = 60_000 * 28 * 28 / (1 << 20) + 1 + 400;
    for _ in 0..total_mb {
        gz.write_all(&zeros).unwrap();
    }
    gz.finish().unwrap().flush().unwrap();
    drop(zeros);
    let before = peak_rss_kb();
    let err = gatekit::data::verify_mnist(tmp.path())
        .unwrap_err()
        .to_string();
    let grew_mb = (peak_rss_kb() - before) / 1024;
    assert!(
        err.contains("train-images-idx3-ubyte.gz: longer than its header declares"),
        "{err}"
    );
    assert!(
        grew_mb < 64,
        "verify grew peak memory by {grew_mb} MB for a {total_mb} MB stream"
    );
}
