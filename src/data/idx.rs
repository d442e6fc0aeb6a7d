//! The IDX file format (the container of MNIST and its look-alikes), read with u8 elements only.
//!
//! Files come from the network or a user's disk, so every field is checked before it is
//! trusted: a bad file gives an [`Error::Data`] naming the file and the fault, never a panic or a
//! huge allocation. The payload is decompressed straight into its final buffer, so loading the
//! full MNIST costs one pass over the bytes and one allocation per file.

use crate::error::{Error, Result};
use flate2::bufread::MultiGzDecoder;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// Magic number of an IDX file of u8 labels (one dimension).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Magic number of an IDX file of u8 images (three dimensions: count, rows, columns).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;

/// The two bytes every gzip stream starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// IDX element type code for unsigned bytes.
const U8_TYPE: u8 = 0x08;

/// A decoded IDX file: its dimensions (record count first) and the u8 elements, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idx {
    /// Sizes from the header, e.g. `[60000, 28, 28]`.
    pub dims: Vec<usize>,
    /// `dims.iter().product()` elements.
    pub data: Vec<u8>,
}

/// A parsed IDX header: what the file claims before any of its data is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxHeader {
    /// The magic number, e.g. [`IMAGES_MAGIC`].
    pub magic: u32,
    /// Sizes, record count first.
    pub dims: Vec<usize>,
}

impl IdxHeader {
    /// Header length in bytes: the magic plus one u32 per dimension.
    pub fn byte_len(&self) -> usize {
        4 + 4 * self.dims.len()
    }

    /// Number of data bytes the header declares (u8 elements).
    fn data_len(&self, path: &Path) -> Result<usize> {
        self.dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| data_err(path, format!("dimensions {:?} overflow", self.dims)))
    }
}

fn data_err(path: &Path, message: impl Into<String>) -> Error {
    Error::Data {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// What a magic number means, for error messages.
fn describe_magic(magic: u32) -> String {
    match magic {
        LABELS_MAGIC => format!("{magic:#010x} (IDX u8 labels)"),
        IMAGES_MAGIC => format!("{magic:#010x} (IDX u8 images)"),
        _ => format!("{magic:#010x}"),
    }
}

/// Whether `path` names a gzip file (`.gz`, any case).
fn named_gz(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// Parses the header at the start of `reader`, checking it against `expected` magic.
fn read_header(path: &Path, reader: &mut impl Read, expected: u32, gz: bool) -> Result<IdxHeader> {
    let read_err = |e: std::io::Error, what: &str| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            data_err(
                path,
                format!("truncated: the file ends inside the IDX {what}"),
            )
        } else if gz {
            data_err(path, format!("corrupt gzip data: {e}"))
        } else {
            Error::io(path, e)
        }
    };
    let mut word = [0u8; 4];
    reader
        .read_exact(&mut word)
        .map_err(|e| read_err(e, "header"))?;
    let magic = u32::from_be_bytes(word);
    if magic != expected {
        let why = if word[0] != 0 || word[1] != 0 {
            "this is not an IDX file".to_string()
        } else if word[2] != U8_TYPE {
            format!(
                "element type {:#04x} is not supported (only u8, {U8_TYPE:#04x})",
                word[2]
            )
        } else {
            format!("{} dimensions", word[3])
        };
        return Err(data_err(
            path,
            format!(
                "bad magic number {magic:#010x} ({why}); expected {}",
                describe_magic(expected)
            ),
        ));
    }
    let ndims = usize::from(word[3]);
    let mut dims = Vec::with_capacity(ndims);
    for _ in 0..ndims {
        reader
            .read_exact(&mut word)
            .map_err(|e| read_err(e, "header"))?;
        let d = usize::try_from(u32::from_be_bytes(word))
            .map_err(|_| data_err(path, "dimension does not fit this platform's usize"))?;
        dims.push(d);
    }
    Ok(IdxHeader { magic, dims })
}

/// Describes the declared shape for "truncated" messages, e.g. "60000 records of 28x28".
fn describe_shape(dims: &[usize]) -> String {
    match dims {
        [] => "a scalar".into(),
        [n] => format!("{n} records"),
        [n, rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(usize::to_string).collect();
            format!("{n} records of {}", rest.join("x"))
        }
    }
}

/// Reads the IDX file at `path`, which must carry the magic number `expected`
/// ([`LABELS_MAGIC`], [`IMAGES_MAGIC`], or any other u8 IDX magic).
///
/// The file may be plain or gzip-compressed (detected from its first bytes); a file named
/// `.gz` must be gzip. The data must be exactly as long as the header declares: a short file
/// is truncated, a long one is not the file its header describes.
pub fn read_idx(path: &Path, expected: u32) -> Result<Idx> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut first = [0u8; 2];
    let got = read_up_to(&mut file, &mut first).map_err(|e| Error::io(path, e))?;
    let gz = got == 2 && first == GZIP_MAGIC;
    if named_gz(path) && !gz {
        return Err(data_err(
            path,
            "named .gz but not gzip-compressed (rename it without .gz if it is a plain IDX file)",
        ));
    }
    // The gzip trailer's ISIZE (uncompressed size mod 2^32) bounds the first allocation by what
    // the file really holds, not by what a possibly hostile header claims.
    let size_hint = if gz {
        // Deflate expands at most ~1032:1, so a larger ISIZE is a lie.
        let isize = gzip_isize(&mut file).map_err(|e| Error::io(path, e))?;
        isize.min(file_len.saturating_mul(1100))
    } else {
        file_len
    };
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(path, e))?;
    let buffered = BufReader::with_capacity(1 << 16, file);
    if gz {
        read_body(
            path,
            MultiGzDecoder::new(buffered),
            expected,
            size_hint,
            true,
        )
    } else {
        read_body(path, buffered, expected, size_hint, false)
    }
}

/// Reads as many bytes as fit in `buf`, fewer only at end of file.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The uncompressed size recorded in a gzip file's last four bytes (0 if the file is shorter).
fn gzip_isize(file: &mut File) -> std::io::Result<u64> {
    if file.seek(SeekFrom::End(0))? < 4 {
        return Ok(0);
    }
    file.seek(SeekFrom::End(-4))?;
    let mut word = [0u8; 4];
    file.read_exact(&mut word)?;
    Ok(u64::from(u32::from_le_bytes(word)))
}

fn read_body(
    path: &Path,
    mut reader: impl Read,
    expected: u32,
    size_hint: u64,
    gz: bool,
) -> Result<Idx> {
    let header = read_header(path, &mut reader, expected, gz)?;
    let want = header.data_len(path)?;
    let hint = usize::try_from(size_hint).unwrap_or(usize::MAX);
    let mut data = Vec::with_capacity(want.min(hint.saturating_sub(header.byte_len())));
    let stream_err = |e: std::io::Error| {
        if gz {
            let what = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "truncated"
            } else {
                "corrupt"
            };
            data_err(path, format!("{what} gzip data: {e}"))
        } else {
            Error::io(path, e)
        }
    };
    (&mut reader)
        .take(want as u64)
        .read_to_end(&mut data)
        .map_err(stream_err)?;
    if data.len() < want {
        return Err(data_err(
            path,
            format!(
                "truncated: the header declares {} ({want} bytes) but only {} bytes follow",
                describe_shape(&header.dims),
                data.len()
            ),
        ));
    }
    let mut extra = [0u8; 1];
    if read_up_to(&mut reader, &mut extra).map_err(stream_err)? > 0 {
        return Err(data_err(
            path,
            format!(
                "longer than its header declares ({}, {want} bytes): trailing data after the last record",
                describe_shape(&header.dims)
            ),
        ));
    }
    Ok(Idx {
        dims: header.dims,
        data,
    })
}

/// Parses an IDX file already in memory (decompressed), checking magic and exact length;
/// returns the header and the data bytes. `path` only names the source in errors.
pub fn parse_idx<'a>(path: &Path, bytes: &'a [u8], expected: u32) -> Result<(IdxHeader, &'a [u8])> {
    let mut reader = bytes;
    let header = read_header(path, &mut reader, expected, false)?;
    let want = header.data_len(path)?;
    match reader.len().cmp(&want) {
        std::cmp::Ordering::Less => Err(data_err(
            path,
            format!(
                "truncated: the header declares {} ({want} bytes) but only {} bytes follow",
                describe_shape(&header.dims),
                reader.len()
            ),
        )),
        std::cmp::Ordering::Greater => Err(data_err(
            path,
            format!(
                "longer than its header declares ({}, {want} bytes): {} trailing bytes",
                describe_shape(&header.dims),
                reader.len() - want
            ),
        )),
        std::cmp::Ordering::Equal => Ok((header, reader)),
    }
}

/// A reader that feeds every byte it passes on into a SHA-256.
struct Hashing<R> {
    inner: R,
    hash: sha2::Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.hash, &buf[..n]);
        Ok(n)
    }
}

/// Checks the IDX structure of `path` (magic `expected`, exact length; gzip or plain) and
/// hashes its decompressed content, streaming: memory stays a few buffers whatever the size.
/// Returns the header and the lowercase hex SHA-256 of the decompressed bytes.
pub fn hash_idx(path: &Path, expected: u32) -> Result<(IdxHeader, String)> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut first = [0u8; 2];
    let got = read_up_to(&mut file, &mut first).map_err(|e| Error::io(path, e))?;
    let gz = got == 2 && first == GZIP_MAGIC;
    if named_gz(path) && !gz {
        return Err(data_err(
            path,
            "named .gz but not gzip-compressed (rename it without .gz if it is a plain IDX file)",
        ));
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(path, e))?;
    let buffered = BufReader::with_capacity(1 << 16, file);
    let reader: Box<dyn Read> = if gz {
        Box::new(MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    let mut reader = Hashing {
        inner: reader,
        hash: <sha2::Sha256 as sha2::Digest>::new(),
    };
    let header = read_header(path, &mut reader, expected, gz)?;
    let want = header.data_len(path)?;
    let stream_err = |e: std::io::Error| {
        if gz {
            let what = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "truncated"
            } else {
                "corrupt"
            };
            data_err(path, format!("{what} gzip data: {e}"))
        } else {
            Error::io(path, e)
        }
    };
    let copied = std::io::copy(&mut (&mut reader).take(want as u64), &mut std::io::sink())
        .map_err(stream_err)?;
    if copied < want as u64 {
        return Err(data_err(
            path,
            format!(
                "truncated: the header declares {} ({want} bytes) but only {copied} bytes follow",
                describe_shape(&header.dims),
            ),
        ));
    }
    let mut extra = [0u8; 1];
    if read_up_to(&mut reader, &mut extra).map_err(stream_err)? > 0 {
        return Err(data_err(
            path,
            format!(
                "longer than its header declares ({}, {want} bytes): trailing data after the last record",
                describe_shape(&header.dims)
            ),
        ));
    }
    let sha = sha2::Digest::finalize(reader.hash)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((header, sha))
}

/// `raw` decompressed if it is gzip, `None` if it is not (it is the content itself); `path`
/// names the source in errors and decides whether gzip is required (a `.gz` name).
pub fn decompress(path: &Path, raw: &[u8]) -> Result<Option<Vec<u8>>> {
    let gz = raw.starts_with(&GZIP_MAGIC);
    if named_gz(path) && !gz {
        return Err(data_err(
            path,
            "named .gz but not gzip-compressed (rename it without .gz if it is a plain IDX file)",
        ));
    }
    if !gz {
        return Ok(None);
    }
    // ISIZE from the trailer sizes the buffer; capped by deflate's maximum ratio (~1032:1).
    let hint = raw
        .len()
        .checked_sub(4)
        .and_then(|at| raw.get(at..))
        .and_then(|w| <[u8; 4]>::try_from(w).ok())
        .map_or(0, |w| u32::from_le_bytes(w) as usize);
    let mut out = Vec::with_capacity(hint.min(raw.len().saturating_mul(1100)));
    MultiGzDecoder::new(raw)
        .read_to_end(&mut out)
        .map_err(|e| data_err(path, format!("corrupt gzip data: {e}")))?;
    Ok(Some(out))
}
