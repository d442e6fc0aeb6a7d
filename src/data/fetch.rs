//! Getting MNIST onto a machine and proving it is intact.
//!
//! The public mirrors come and go and some serve stale or damaged files, so a download is
//! trusted only after the sha256 of its *decompressed* bytes matches the published value (the
//! one checksum that holds whatever compression a mirror used). Verification happens in memory
//! before anything is written, and installation is an atomic rename, so an interrupted or
//! failed fetch never leaves a file that [`super::load_mnist`] could mistake for data.

use super::idx::{decompress, hash_idx, parse_idx};
use super::mnist::{
    MNIST_FILES, MnistFile, fetch_command, find_idx_file, idx_file_names, mnist_dir, not_a_file,
};
use crate::error::{Error, Result};
use crate::run_folder::fsio::write_atomic;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Public MNIST mirrors, tried in this order; a file's URL is mirror + name + `.gz`.
pub const MNIST_MIRRORS: [&str; 3] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
];

/// Largest download accepted: the biggest MNIST file is 47 MB uncompressed, so anything far
/// beyond is not MNIST and must not fill memory.
const MAX_DOWNLOAD: u64 = 128 << 20;

/// What [`fetch_mnist`] is doing, for a progress display. The library prints nothing itself.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum FetchEvent<'a> {
    /// The file is already installed and intact; nothing is downloaded.
    Present {
        /// Standard file name, e.g. `train-images-idx3-ubyte`.
        file: &'a str,
        /// The installed file.
        path: &'a Path,
    },
    /// A download starts.
    Start {
        /// Standard file name.
        file: &'a str,
        /// The URL being read.
        url: &'a str,
        /// Size the server announced, if it did.
        total: Option<u64>,
    },
    /// Bytes of the current download received so far.
    Progress {
        /// Bytes received.
        received: u64,
    },
    /// A mirror failed or served a bad file; the next mirror is tried.
    MirrorFailed {
        /// Standard file name.
        file: &'a str,
        /// The URL that failed.
        url: &'a str,
        /// What went wrong, one line.
        message: &'a str,
    },
    /// The file was downloaded, verified and installed.
    Installed {
        /// Standard file name.
        file: &'a str,
        /// Where it now lives.
        path: &'a Path,
        /// Where it came from.
        url: &'a str,
        /// Bytes downloaded.
        bytes: u64,
    },
    /// A stale or damaged copy under another accepted name was removed, so it cannot shadow the
    /// verified file.
    Removed {
        /// The removed file.
        path: &'a Path,
    },
}

/// An MNIST file that passed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedFile {
    /// Standard file name, e.g. `train-images-idx3-ubyte`.
    pub name: &'static str,
    /// The file on disk (whichever accepted name and compression it has).
    pub path: PathBuf,
    /// Number of records in it.
    pub records: usize,
    /// sha256 of its decompressed bytes (lowercase hex).
    pub sha256: String,
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks decompressed content against `spec`: IDX structure, record count, checksum.
/// `source` names the file or URL in messages.
fn check_content(source: &Path, bytes: &[u8], spec: &MnistFile) -> Result<String> {
    let (header, _) = parse_idx(source, bytes, spec.magic)?;
    let records = header.dims.first().copied().unwrap_or(0);
    if records != spec.records {
        return Err(Error::Data {
            path: source.to_path_buf(),
            message: format!(
                "holds {records} records, expected {} for {}",
                spec.records, spec.name
            ),
        });
    }
    let sha = sha256_hex(bytes);
    if sha != spec.sha256 {
        return Err(Error::Data {
            path: source.to_path_buf(),
            message: format!(
                "sha256 of the decompressed data is {sha}, expected {} (damaged or not {})",
                spec.sha256, spec.name
            ),
        });
    }
    Ok(sha)
}

/// The message of a data error without its path, for one-line notes that name the URL already.
fn message_of(e: &Error) -> String {
    match e {
        Error::Data { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// A well-formed IDX file that is not the MNIST file it is named as.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotMnist {
    /// Another record count.
    #[error("holds {records} records, expected {expected} for {name}")]
    Records {
        /// Records in the file.
        records: usize,
        /// MNIST's count.
        expected: usize,
        /// The standard file name.
        name: &'static str,
    },
    /// Other content.
    #[error(
        "sha256 of the decompressed data is {sha256}, expected {expected} (damaged or not {name})"
    )]
    Checksum {
        /// The file's checksum.
        sha256: String,
        /// MNIST's.
        expected: &'static str,
        /// The standard file name.
        name: &'static str,
    },
}

/// Verifies one installed file at `path` against `spec`, hashing it streaming. The outer error
/// is a file that is not well-formed IDX of the right kind; the inner one a well-formed file
/// that is not MNIST's (record count or checksum).
fn check_installed(
    path: &Path,
    spec: &MnistFile,
) -> Result<std::result::Result<VerifiedFile, NotMnist>> {
    let (header, sha256) = hash_idx(path, spec.magic)?;
    let records = header.dims.first().copied().unwrap_or(0);
    if records != spec.records {
        return Ok(Err(NotMnist::Records {
            records,
            expected: spec.records,
            name: spec.name,
        }));
    }
    if sha256 != spec.sha256 {
        return Ok(Err(NotMnist::Checksum {
            sha256,
            expected: spec.sha256,
            name: spec.name,
        }));
    }
    Ok(Ok(VerifiedFile {
        name: spec.name,
        path: path.to_path_buf(),
        records: spec.records,
        sha256,
    }))
}

/// Verifies one installed file at `path` against `spec`.
fn verify_file(path: &Path, spec: &MnistFile) -> Result<VerifiedFile> {
    check_installed(path, spec)?.map_err(|why| Error::Data {
        path: path.to_path_buf(),
        message: why.to_string(),
    })
}

/// Checks MNIST in `<data_dir>/mnist`: all four files present (under any accepted name), each a
/// well-formed IDX file with the published record count and decompressed sha256.
///
/// The error lists every problem found and the command that fetches the data.
pub fn verify_mnist(data_dir: &Path) -> Result<Vec<VerifiedFile>> {
    let dir = mnist_dir(data_dir);
    let mut ok = Vec::new();
    let mut problems = Vec::new();
    // Well-formed IDX files whose record count or checksum is not MNIST's.
    let mut other_data = 0;
    for spec in &MNIST_FILES {
        match find_idx_file(&dir, spec.name) {
            None => problems.push(match not_a_file(&dir, spec.name) {
                Some(why) => why,
                None => format!("{}[.gz] missing", spec.name),
            }),
            Some(path) => match check_installed(&path, spec) {
                Ok(Ok(v)) => ok.push(v),
                Ok(Err(why)) => {
                    other_data += 1;
                    problems.push(format!("{}: {why}", path.display()));
                }
                Err(e) => problems.push(e.to_string()),
            },
        }
    }
    if problems.is_empty() {
        return Ok(ok);
    }
    if other_data == MNIST_FILES.len() {
        // Four well-formed IDX files, none of them MNIST's: another dataset in MNIST layout.
        return Err(Error::Data {
            path: dir.clone(),
            message: format!(
                "holds four well-formed IDX files, but their checksums are not MNIST's: another dataset in MNIST layout (e.g. Fashion-MNIST)? Training accepts any MNIST-layout dataset as it is (the image task kinds read {} whatever it holds; `gtk data verify` only vouches for MNIST itself). For MNIST, move it away and run: {}",
                dir.display(),
                fetch_command(&dir)
            ),
        });
    }
    let what = if !dir.is_dir() {
        "MNIST not found (no such folder)".to_string()
    } else if ok.is_empty() && problems.iter().all(|p| p.ends_with("missing")) {
        "MNIST not found (none of its four files is there)".to_string()
    } else {
        problems.join("; ")
    };
    Err(Error::Data {
        path: dir.clone(),
        message: format!("{what}; fetch it with: {}", fetch_command(&dir)),
    })
}

/// Downloads the four MNIST files into `<data_dir>/mnist`, skipping those already there and
/// intact. Each file is tried from `mirrors` in turn ([`MNIST_MIRRORS`] when empty); a mirror
/// that fails or serves a file with the wrong checksum is reported through `on` and the next
/// one is tried, and a mirror that failed is tried after the others for the remaining files.
///
/// Files are verified in memory and installed by atomic rename, so a failure leaves no partial
/// or temporary file behind; files installed before the failure are complete and verified.
pub fn fetch_mnist(
    data_dir: &Path,
    mirrors: &[String],
    on: &mut dyn FnMut(FetchEvent<'_>),
) -> Result<Vec<VerifiedFile>> {
    let mirrors: Vec<String> = if mirrors.is_empty() {
        MNIST_MIRRORS.iter().map(|m| m.to_string()).collect()
    } else {
        mirrors.to_vec()
    };
    let mirrors: Vec<String> = mirrors
        .into_iter()
        .map(|m| if m.ends_with('/') { m } else { format!("{m}/") })
        .collect();
    let dir = mnist_dir(data_dir);
    remove_stale_temps(&dir);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .user_agent(concat!("gatekit/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut failures = vec![0usize; mirrors.len()];
    let mut done = Vec::new();
    for spec in &MNIST_FILES {
        if let Some(path) = find_idx_file(&dir, spec.name)
            && let Ok(v) = verify_file(&path, spec)
        {
            on(FetchEvent::Present {
                file: spec.name,
                path: &path,
            });
            done.push(v);
            continue;
        }
        // Mirrors that have failed before go last (stable sort keeps the given order otherwise).
        let mut order: Vec<usize> = (0..mirrors.len()).collect();
        order.sort_by_key(|&i| failures[i]);
        let mut notes = Vec::new();
        let mut installed = None;
        for i in order {
            let url = format!("{}{}.gz", mirrors[i], spec.name);
            match fetch_one(&agent, &url, spec, &dir, on) {
                Ok((v, bytes)) => {
                    on(FetchEvent::Installed {
                        file: spec.name,
                        path: &v.path,
                        url: &url,
                        bytes,
                    });
                    installed = Some(v);
                    break;
                }
                Err(Failure::Mirror(message)) => {
                    on(FetchEvent::MirrorFailed {
                        file: spec.name,
                        url: &url,
                        message: &message,
                    });
                    failures[i] += 1;
                    notes.push(format!("{url}: {message}"));
                }
                Err(Failure::Local(e)) => return Err(e),
            }
        }
        let Some(v) = installed else {
            return Err(Error::Data {
                path: dir.join(format!("{}.gz", spec.name)),
                message: format!(
                    "could not fetch it intact from any mirror (tried {}: {}); check the network or give a working mirror with --mirror URL",
                    mirrors.len(),
                    notes.join("; ")
                ),
            });
        };
        // Other copies of the same file would be found before or instead of the new one.
        for name in idx_file_names(spec.name) {
            let other = dir.join(name);
            if other != v.path && other.is_file() && std::fs::remove_file(&other).is_ok() {
                on(FetchEvent::Removed { path: &other });
            }
        }
        done.push(v);
    }
    Ok(done)
}

/// Why one download did not install: the mirror's fault (try the next) or ours (stop).
enum Failure {
    Mirror(String),
    Local(Error),
}

/// Downloads `url`, verifies it against `spec` and installs it in `dir`.
fn fetch_one(
    agent: &ureq::Agent,
    url: &str,
    spec: &MnistFile,
    dir: &Path,
    on: &mut dyn FnMut(FetchEvent<'_>),
) -> std::result::Result<(VerifiedFile, u64), Failure> {
    let raw = download(agent, url, spec.name, on).map_err(|e| Failure::Mirror(e.to_string()))?;
    let gz_name = format!("{}.gz", spec.name);
    let source = Path::new(&gz_name);
    // A server may have undone the gzip itself (Content-Encoding); install what came.
    let (content, name) = match decompress(source, &raw) {
        Ok(Some(plain)) => (plain, gz_name.clone()),
        Ok(None) => (raw.clone(), spec.name.to_string()),
        Err(e) => return Err(Failure::Mirror(message_of(&e))),
    };
    let sha256 =
        check_content(source, &content, spec).map_err(|e| Failure::Mirror(message_of(&e)))?;
    drop(content);
    std::fs::create_dir_all(dir).map_err(|e| Failure::Local(Error::io(dir, e)))?;
    let path = dir.join(name);
    write_atomic(&path, &raw).map_err(Failure::Local)?;
    Ok((
        VerifiedFile {
            name: spec.name,
            path,
            records: spec.records,
            sha256,
        },
        raw.len() as u64,
    ))
}

/// Why a download from one mirror failed (one line each; the next mirror is tried).
#[derive(Debug, thiserror::Error)]
enum DownloadError {
    /// The request failed (connection, TLS, HTTP status).
    #[error("{0}")]
    Request(#[from] ureq::Error),
    /// A body larger than any MNIST file.
    #[error("announces {0} bytes, more than any MNIST file")]
    TooLarge(u64),
    /// The connection broke off.
    #[error("download interrupted: {0}")]
    Interrupted(std::io::Error),
    /// Fewer bytes than announced.
    #[error("received {received} of {announced} bytes")]
    Short {
        /// Bytes received.
        received: usize,
        /// Bytes announced.
        announced: u64,
    },
}

/// The body of `url`, reporting progress.
fn download(
    agent: &ureq::Agent,
    url: &str,
    file: &str,
    on: &mut dyn FnMut(FetchEvent<'_>),
) -> std::result::Result<Vec<u8>, DownloadError> {
    let response = agent.get(url).call()?;
    let total = response.body().content_length();
    if let Some(n) = total.filter(|&n| n > MAX_DOWNLOAD) {
        return Err(DownloadError::TooLarge(n));
    }
    on(FetchEvent::Start { file, url, total });
    let mut reader = response
        .into_body()
        .into_with_config()
        .limit(MAX_DOWNLOAD)
        .reader();
    let capacity = usize::try_from(total.unwrap_or(0)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                bytes.extend_from_slice(&chunk[..n]);
                on(FetchEvent::Progress {
                    received: bytes.len() as u64,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DownloadError::Interrupted(e)),
        }
    }
    if let Some(n) = total.filter(|&n| n != bytes.len() as u64) {
        return Err(DownloadError::Short {
            received: bytes.len(),
            announced: n,
        });
    }
    Ok(bytes)
}

/// Removes temp files an interrupted install (a killed process) left in `dir`; only old ones,
/// so a fetch running next to this one keeps its own.
fn remove_stale_temps(dir: &Path) {
    let old = |entry: &std::fs::DirEntry| {
        entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600))
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let names: Vec<String> = MNIST_FILES
        .iter()
        .flat_map(|f| idx_file_names(f.name))
        .collect();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let stale = names
            .iter()
            .any(|n| name.starts_with(&format!(".{n}.tmp-")));
        if stale && old(&entry) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
