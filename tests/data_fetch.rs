//! `gtk data fetch` and `gtk data verify` against a local HTTP server serving real MNIST, next
//! to mirrors that fail in every way a public one can.

mod common;

use common::{assert_clean_error, gtk, text};
use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const FILES: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    (
        "train-labels-idx1-ubyte",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    (
        "t10k-images-idx3-ubyte",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    (
        "t10k-labels-idx1-ubyte",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
];

/// A tiny HTTP/1.1 server on 127.0.0.1 serving `routes` (path → body), 404 otherwise. It
/// answers at most `max_requests` requests and stops by itself after a minute, so a failing
/// test cannot leave it running. Returns its base URL.
fn serve(routes: HashMap<String, Vec<u8>>, max_requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut served = 0;
        while served < max_requests && Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => {
                    served += 1;
                    let _ = answer(stream, &routes);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => break,
            }
        }
    });
    base
}

fn answer(mut stream: TcpStream, routes: &HashMap<String, Vec<u8>>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") && request.len() < 8192 {
        if stream.read(&mut byte)? == 0 {
            break;
        }
        request.push(byte[0]);
    }
    let request = String::from_utf8_lossy(&request);
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match routes.get(path) {
        Some(body) => ("200 OK", body.as_slice()),
        None => ("404 Not Found", b"not found".as_slice()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    stream.flush()
}

/// A URL nothing listens on.
fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}/", listener.local_addr().unwrap())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn sha256_of_decompressed(path: &Path) -> String {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A well-formed IDX file with MNIST's header for `name` and all-zero data: only the checksum
/// can tell it from the real one.
fn blank_idx(name: &str) -> Vec<u8> {
    let n: u32 = if name.starts_with("train") {
        60_000
    } else {
        10_000
    };
    let (magic, dims): (u32, Vec<u32>) = if name.contains("images") {
        (0x803, vec![n, 28, 28])
    } else {
        (0x801, vec![n])
    };
    let mut out = magic.to_be_bytes().to_vec();
    for d in &dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.resize(out.len() + dims.iter().product::<u32>() as usize, 0);
    out
}

/// Routes: `/good/` real MNIST, `/corrupt/` well-formed IDX with the wrong bytes, `/cut/` the
/// real files cut in half, `/partial/` only the training images intact.
fn mnist_routes(src: &Path) -> HashMap<String, Vec<u8>> {
    let mut routes = HashMap::new();
    for (name, _) in FILES {
        let file = format!("{name}.gz");
        let good = std::fs::read(src.join(&file)).unwrap();
        routes.insert(format!("/corrupt/{file}"), gzip(&blank_idx(name)));
        routes.insert(format!("/cut/{file}"), good[..good.len() / 2].to_vec());
        if name == "train-images-idx3-ubyte" {
            routes.insert(format!("/partial/{file}"), good.clone());
        }
        routes.insert(format!("/good/{file}"), good);
    }
    routes
}

fn mnist_src() -> Option<PathBuf> {
    common::shared_data().map(|d| d.join("mnist"))
}

/// Every file under `dir`, recursively (hidden temp files included).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn fetch(tmp: &Path, mirrors: &[String]) -> std::process::Output {
    let data_dir = tmp.display().to_string();
    let mut args = vec!["data", "fetch", "mnist", "--data-dir", &data_dir];
    for m in mirrors {
        args.push("--mirror");
        args.push(m);
    }
    gtk(tmp, &args)
}

#[test]
fn fetch_skips_bad_mirrors_installs_verified_files_and_verify_passes() {
    let Some(src) = mnist_src() else { return };
    let base = serve(mnist_routes(&src), 64);
    let tmp = tempfile::tempdir().unwrap();
    let mirrors = vec![
        closed_port(),
        format!("{base}/missing/"),
        format!("{base}/corrupt/"),
        format!("{base}/cut"), // no trailing slash: fetch adds it
        format!("{base}/good/"),
    ];
    let out = fetch(tmp.path(), &mirrors);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "fetch failed:\n{stdout}\n{stderr}");
    // One note per bad mirror for the first file; the failed mirrors then go last, so the
    // other files come straight from the good one.
    let notes: Vec<&str> = stderr.lines().filter(|l| l.starts_with("note: ")).collect();
    assert_eq!(notes.len(), 4, "notes:\n{stderr}");
    assert!(
        notes[0].contains(&mirrors[0]) && notes[0].contains("refused"),
        "{stderr}"
    );
    assert!(notes[1].contains("404"), "{stderr}");
    assert!(
        notes[2].contains("sha256 of the decompressed data is"),
        "{stderr}"
    );
    assert!(notes[3].contains("gzip"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stdout.matches("sha256 ok").count(), 4, "{stdout}");

    let dir = tmp.path().join("mnist");
    let mut installed: Vec<PathBuf> = files_under(tmp.path());
    installed.sort();
    let mut expected: Vec<PathBuf> = FILES
        .iter()
        .map(|(n, _)| dir.join(format!("{n}.gz")))
        .collect();
    expected.sort();
    assert_eq!(installed, expected, "exactly the four files, no temp files");
    for (name, sha) in FILES {
        let path = dir.join(format!("{name}.gz"));
        assert_eq!(sha256_of_decompressed(&path), sha, "{name}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(src.join(format!("{name}.gz"))).unwrap(),
            "{name}: installed bytes are the served bytes"
        );
    }

    let data_dir = tmp.path().display().to_string();
    for args in [
        vec!["data", "verify", "--data-dir", &data_dir],
        vec!["data", "verify", "mnist", "--data-dir", &data_dir],
    ] {
        let out = gtk(tmp.path(), &args);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "verify failed: {stderr}");
        assert_eq!(stdout.matches("ok  ").count(), 4, "{stdout}");
        assert!(stdout.contains("60000 records"), "{stdout}");
        assert!(stdout.contains("complete and intact"), "{stdout}");
    }

    // A second fetch finds everything in place and needs no working mirror.
    let out = fetch(tmp.path(), &[closed_port()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "refetch failed: {stderr}");
    assert_eq!(stdout.matches("already present").count(), 4, "{stdout}");
}

#[test]
fn fetch_with_only_bad_mirrors_fails_and_leaves_nothing() {
    let Some(src) = mnist_src() else { return };
    let base = serve(mnist_routes(&src), 64);
    let tmp = tempfile::tempdir().unwrap();
    let mirrors = vec![
        closed_port(),
        format!("{base}/missing/"),
        format!("{base}/corrupt/"),
        format!("{base}/cut/"),
    ];
    let out = fetch(tmp.path(), &mirrors);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let error = stderr.lines().last().unwrap_or("");
    assert!(error.starts_with("error: "), "{stderr}");
    assert!(error.contains("train-images-idx3-ubyte.gz"), "{error}");
    assert!(
        error.contains("could not fetch it intact from any mirror (tried 4"),
        "{error}"
    );
    for m in &mirrors {
        assert!(error.contains(m.as_str()), "`{m}` missing from: {error}");
    }
    assert!(
        error.contains("sha256"),
        "checksum failure reported: {error}"
    );
    assert_eq!(files_under(tmp.path()), Vec::<PathBuf>::new());

    // A mirror with only the first file intact: that one is installed, complete and verified,
    // and nothing partial or temporary is left of the others.
    let out = fetch(tmp.path(), &[format!("{base}/partial/")]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("train-labels-idx1-ubyte.gz"), "{stderr}");
    let only = tmp.path().join("mnist").join("train-images-idx3-ubyte.gz");
    assert_eq!(files_under(tmp.path()), vec![only.clone()]);
    assert_eq!(sha256_of_decompressed(&only), FILES[0].1);
}

#[test]
fn verify_on_an_empty_folder_names_the_fetch_command() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().display().to_string();
    let out = gtk(tmp.path(), &["data", "verify", "--data-dir", &data_dir]);
    assert_clean_error(
        &out,
        &[
            "MNIST not found",
            &format!("gtk data fetch mnist --data-dir {data_dir}"),
        ],
    );
    std::fs::create_dir(tmp.path().join("mnist")).unwrap();
    let out = gtk(
        tmp.path(),
        &["data", "verify", "mnist", "--data-dir", &data_dir],
    );
    assert_clean_error(
        &out,
        &[
            "none of its four files",
            &format!("gtk data fetch mnist --data-dir {data_dir}"),
        ],
    );
}

#[test]
fn verify_names_a_damaged_or_missing_file() {
    let Some(src) = mnist_src() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mnist");
    std::fs::create_dir(&dir).unwrap();
    // Two good files, the test images replaced by (intact) training labels, test labels absent.
    for name in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"] {
        std::fs::copy(src.join(name), dir.join(name)).unwrap();
    }
    std::fs::copy(
        src.join("train-labels-idx1-ubyte.gz"),
        dir.join("t10k-images-idx3-ubyte.gz"),
    )
    .unwrap();
    let data_dir = tmp.path().display().to_string();
    let out = gtk(tmp.path(), &["data", "verify", "--data-dir", &data_dir]);
    assert_clean_error(
        &out,
        &[
            "t10k-images-idx3-ubyte.gz: bad magic number 0x00000801",
            "t10k-labels-idx1-ubyte[.gz] missing",
            "gtk data fetch mnist --data-dir",
        ],
    );
    // Right structure and count, wrong bytes: the checksum catches it.
    let mut labels = Vec::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(src.join("t10k-labels-idx1-ubyte.gz")).unwrap(),
    )
    .read_to_end(&mut labels)
    .unwrap();
    labels[100] = (labels[100] + 1) % 10;
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), &labels).unwrap();
    std::fs::copy(
        src.join("t10k-images-idx3-ubyte.gz"),
        dir.join("t10k-images-idx3-ubyte.gz"),
    )
    .unwrap();
    let out = gtk(tmp.path(), &["data", "verify", "--data-dir", &data_dir]);
    assert_clean_error(
        &out,
        &[
            "t10k-labels-idx1-ubyte: sha256 of the decompressed data is",
            "expected ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ],
    );
}

#[test]
fn the_data_folder_comes_from_gatekit_data_then_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    // $GATEKIT_DATA when there is no flag.
    if let Some(shared) = common::shared_data() {
        let out = Command::new(env!("CARGO_BIN_EXE_gtk"))
            .args(["data", "verify"])
            .env("GATEKIT_DATA", &shared)
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        assert!(
            stdout.contains(&shared.join("mnist").display().to_string()),
            "{stdout}"
        );
    }
    // Else $XDG_CACHE_HOME/gatekit.
    let out = Command::new(env!("CARGO_BIN_EXE_gtk"))
        .args(["data", "verify"])
        .env_remove("GATEKIT_DATA")
        .env("XDG_CACHE_HOME", tmp.path())
        .output()
        .unwrap();
    let cache = tmp.path().join("gatekit");
    assert_clean_error(
        &out,
        &[
            &cache.join("mnist").display().to_string(),
            &format!("gtk data fetch mnist --data-dir {}", cache.display()),
        ],
    );
    // Else ~/.cache/gatekit.
    let out = Command::new(env!("CARGO_BIN_EXE_gtk"))
        .args(["data", "verify"])
        .env_remove("GATEKIT_DATA")
        .env_remove("XDG_CACHE_HOME")
        .env("HOME", tmp.path())
        .output()
        .unwrap();
    assert_clean_error(
        &out,
        &[&tmp
            .path()
            .join(".cache/gatekit/mnist")
            .display()
            .to_string()],
    );
}

/// Another dataset in MNIST layout (four well-formed IDX files, none with MNIST's checksum):
/// verify says so and that training accepts it, instead of calling it damaged.
#[test]
fn verify_recognises_another_dataset_in_mnist_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mnist");
    std::fs::create_dir(&dir).unwrap();
    for f in &gatekit::data::mnist::MNIST_FILES {
        std::fs::write(dir.join(format!("{}.gz", f.name)), gzip(&blank_idx(f.name))).unwrap();
    }
    let data_dir = tmp.path().display().to_string();
    let out = gtk(tmp.path(), &["data", "verify", "--data-dir", &data_dir]);
    let msg = assert_clean_error(
        &out,
        &[
            "four well-formed IDX files",
            "checksums are not MNIST's",
            "Training accepts any MNIST-layout dataset",
            &format!("gtk data fetch mnist --data-dir {data_dir}"),
        ],
    );
    assert!(!msg.contains("damaged"), "{msg}");
}

/// A folder or a symlink loop where a data file should be is named as such, not "missing",
/// by `gtk data verify` and by training.
#[test]
fn a_folder_or_symlink_loop_instead_of_a_data_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mnist");
    std::fs::create_dir(&dir).unwrap();
    std::fs::create_dir(dir.join("train-images-idx3-ubyte")).unwrap();
    std::os::unix::fs::symlink("t10k-labels-idx1-ubyte", dir.join("t10k-labels-idx1-ubyte"))
        .unwrap();
    for name in ["train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"] {
        std::fs::write(dir.join(format!("{name}.gz")), gzip(&blank_idx(name))).unwrap();
    }
    let data_dir = tmp.path().display().to_string();
    let out = gtk(tmp.path(), &["data", "verify", "--data-dir", &data_dir]);
    let msg = assert_clean_error(
        &out,
        &[
            "train-images-idx3-ubyte: is a folder, not a data file",
            "t10k-labels-idx1-ubyte: cannot be opened",
            "symbolic links",
        ],
    );
    assert!(!msg.contains("missing"), "{msg}");
    let err = gatekit::data::mnist::read_mnist(&dir)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is a folder, not a data file") && !err.contains("missing"),
        "{err}"
    );
}
