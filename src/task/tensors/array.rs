//! Arrays read from files: `.npy` (alone in a folder of them, or inside a `.npz`), safetensors
//! and CSV with a header.
//!
//! Binary files are memory-mapped, once per process per file (a second task naming the same
//! file gets the same mapping), and read row by row as batches are drawn, so a file larger than
//! memory trains. Full passes (the checks for NaN/inf and labels, the standardisation
//! statistics) read the file with positioned reads instead of through the mapping, so they do
//! not leave the whole file resident in the process. Only the members of a compressed `.npz`
//! (`np.savez_compressed`) are inflated into memory, again once per process.
//!
//! Every malformed input is an [`Error::Data`] naming the file, the array or column, and what
//! would be valid.

use crate::error::{Error, Result};
use memmap2::Mmap;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::SystemTime;

/// Element types gatekit reads: numpy's numeric dtypes, little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// float32
    F32,
    /// float64
    F64,
    /// int8
    I8,
    /// int16
    I16,
    /// int32
    I32,
    /// int64
    I64,
    /// uint8
    U8,
    /// uint16
    U16,
    /// uint32
    U32,
    /// uint64
    U64,
    /// bool (one byte, 0 or 1)
    Bool,
}

/// What the readers accept, for error messages.
pub const SUPPORTED: &str =
    "float32, float64, int8/16/32/64, uint8/16/32/64 or bool, little-endian, C order";

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
            Dtype::F32 | Dtype::I32 | Dtype::U32 => 4,
            Dtype::I16 | Dtype::U16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }

    /// Whether the type holds floats (so targets of this type mean regression).
    pub fn is_float(self) -> bool {
        matches!(self, Dtype::F32 | Dtype::F64)
    }

    /// numpy's name.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
            Dtype::I8 => "int8",
            Dtype::I16 => "int16",
            Dtype::I32 => "int32",
            Dtype::I64 => "int64",
            Dtype::U8 => "uint8",
            Dtype::U16 => "uint16",
            Dtype::U32 => "uint32",
            Dtype::U64 => "uint64",
            Dtype::Bool => "bool",
        }
    }

    /// From a numpy `descr` such as `<f4`; the error says what is wrong with it.
    fn from_npy(descr: &str) -> std::result::Result<Dtype, NpyError> {
        let mut chars = descr.chars();
        let order = chars.next().unwrap_or(' ');
        let code = chars.as_str();
        let dtype = match code {
            "f4" => Dtype::F32,
            "f8" => Dtype::F64,
            "i1" => Dtype::I8,
            "i2" => Dtype::I16,
            "i4" => Dtype::I32,
            "i8" => Dtype::I64,
            "u1" => Dtype::U8,
            "u2" => Dtype::U16,
            "u4" => Dtype::U32,
            "u8" => Dtype::U64,
            "b1" => Dtype::Bool,
            "O" => return Err(NpyError::Objects(descr.into())),
            _ => return Err(NpyError::UnsupportedDtype(descr.into())),
        };
        match order {
            '<' | '|' | '=' => Ok(dtype),
            '>' if dtype.size() == 1 => Ok(dtype),
            '>' => Err(NpyError::BigEndian(descr.into())),
            _ => Err(NpyError::UnsupportedDtype(descr.into())),
        }
    }

    fn from_safetensors(d: safetensors::Dtype) -> Option<Dtype> {
        use safetensors::Dtype as S;
        Some(match d {
            S::F32 => Dtype::F32,
            S::F64 => Dtype::F64,
            S::I8 => Dtype::I8,
            S::I16 => Dtype::I16,
            S::I32 => Dtype::I32,
            S::I64 => Dtype::I64,
            S::U8 => Dtype::U8,
            S::U16 => Dtype::U16,
            S::U32 => Dtype::U32,
            S::U64 => Dtype::U64,
            S::BOOL => Dtype::Bool,
            _ => return None,
        })
    }

    /// Decodes `out.len()` little-endian elements from `bytes` into `out`.
    fn decode(self, bytes: &[u8], out: &mut [f64]) {
        macro_rules! each {
            ($t:ty, $n:expr) => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact($n)) {
                    let mut a = [0u8; $n];
                    a.copy_from_slice(c);
                    *o = <$t>::from_le_bytes(a) as f64;
                }
            };
        }
        match self {
            Dtype::F32 => each!(f32, 4),
            Dtype::F64 => each!(f64, 8),
            Dtype::I8 => each!(i8, 1),
            Dtype::I16 => each!(i16, 2),
            Dtype::I32 => each!(i32, 4),
            Dtype::I64 => each!(i64, 8),
            Dtype::U8 | Dtype::Bool => each!(u8, 1),
            Dtype::U16 => each!(u16, 2),
            Dtype::U32 => each!(u32, 4),
            Dtype::U64 => each!(u64, 8),
        }
    }
}

/// A memory-mapped file and a handle for positioned reads.
#[derive(Debug)]
pub struct MappedFile {
    map: Mmap,
    file: File,
    /// Bytes of the mapping made resident (estimated) since the last release.
    touched: AtomicUsize,
}

/// Resident pages of a mapping count towards the process's RSS: random batches over a large
/// file would make most of it resident in the end. Once this much has been touched, the
/// mapping's pages are released (`MADV_DONTNEED`: the data stays in the page cache and the next
/// read maps it back without I/O).
const RESIDENT_BUDGET: usize = 8 << 20;
/// What one read may make resident: the kernel maps up to 64 KB of cached pages around a fault.
const FAULT_SPAN: usize = 64 << 10;

impl MappedFile {
    /// Notes a read of `bytes` through the mapping, releasing its pages past the budget.
    fn touch(&self, bytes: usize) {
        let cost = bytes + FAULT_SPAN;
        let total = self.touched.fetch_add(cost, Ordering::Relaxed) + cost;
        if total > RESIDENT_BUDGET && self.touched.swap(0, Ordering::Relaxed) > RESIDENT_BUDGET {
            #[cfg(unix)]
            // SAFETY: a read-only shared file mapping: DONTNEED only drops this process's page
            // table entries; later reads (on any thread) fault the same file data back in.
            let _ = unsafe {
                self.map
                    .unchecked_advise(memmap2::UncheckedAdvice::DontNeed)
            };
        }
    }
}

/// Where an array's bytes live.
#[derive(Debug, Clone)]
enum Buffer {
    /// In a mapped file (npy, stored npz member, safetensors).
    Mapped(Arc<MappedFile>),
    /// Inflated into memory (a compressed npz member).
    Owned(Arc<Vec<u8>>),
}

impl Buffer {
    fn bytes(&self) -> &[u8] {
        match self {
            Buffer::Mapped(m) => &m.map,
            Buffer::Owned(v) => v,
        }
    }
}

#[derive(Debug, Clone)]
enum Data {
    /// `shape.product() * dtype.size()` bytes from `offset`.
    Bytes { buf: Buffer, offset: usize },
    /// Columns of a parsed CSV file, in the order chosen.
    Columns {
        table: Arc<CsvTable>,
        cols: Vec<usize>,
    },
}

/// One array of a file: row-major `[rows, ..example shape]`.
#[derive(Debug, Clone)]
pub struct Array {
    /// The file.
    pub path: PathBuf,
    /// The array's name in messages: `array `x``, `columns a, b`.
    pub what: String,
    /// Element type (CSV columns are float64).
    pub dtype: Dtype,
    /// Shape; axis 0 is the example.
    pub shape: Vec<usize>,
    data: Data,
}

impl Array {
    /// Number of examples (axis 0).
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(0)
    }

    /// Elements per example.
    pub fn row_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    /// An error about this array.
    pub fn error(&self, message: impl std::fmt::Display) -> Error {
        Error::Data {
            path: self.path.clone(),
            message: format!("{} {message}", self.what),
        }
    }

    /// Whether the data is in memory-mapped file (for tests and benchmarks).
    pub fn is_mapped(&self) -> bool {
        matches!(
            self.data,
            Data::Bytes {
                buf: Buffer::Mapped(_),
                ..
            }
        )
    }

    /// Example `r` as floats into `out` (`row_len` long).
    pub fn read_row(&self, r: usize, out: &mut [f64]) {
        let n = self.row_len();
        match &self.data {
            Data::Bytes { buf, offset } => {
                let size = self.dtype.size();
                let start = offset + r * n * size;
                self.dtype
                    .decode(&buf.bytes()[start..start + n * size], &mut out[..n]);
                if let Buffer::Mapped(m) = buf {
                    m.touch(n * size);
                }
            }
            Data::Columns { table, cols } => {
                for (o, &c) in out.iter_mut().zip(cols) {
                    *o = table.columns[c][r];
                }
            }
        }
    }

    /// Calls `f(row, values)` for every example in order. Mapped files are read with
    /// positioned reads in blocks, not through the mapping, so the pass leaves nothing
    /// resident.
    pub fn scan(&self, f: &mut dyn FnMut(usize, &[f64]) -> Result<()>) -> Result<()> {
        let (rows, n) = (self.rows(), self.row_len());
        let mut values = vec![0.0; n];
        match &self.data {
            Data::Bytes {
                buf: Buffer::Mapped(m),
                offset,
            } => {
                let row_bytes = n * self.dtype.size();
                let per_block = (1 << 20) / row_bytes.max(1);
                let per_block = per_block.max(1);
                let mut block = vec![0u8; per_block * row_bytes];
                let mut r = 0;
                while r < rows {
                    let take = per_block.min(rows - r);
                    let bytes = &mut block[..take * row_bytes];
                    read_at(m, (offset + r * row_bytes) as u64, bytes)
                        .map_err(|e| Error::io(&self.path, e))?;
                    for (k, row) in bytes.chunks_exact(row_bytes.max(1)).enumerate() {
                        self.dtype.decode(row, &mut values);
                        f(r + k, &values)?;
                    }
                    if row_bytes == 0 {
                        for k in 0..take {
                            f(r + k, &values)?;
                        }
                    }
                    r += take;
                }
            }
            _ => {
                for r in 0..rows {
                    self.read_row(r, &mut values);
                    f(r, &values)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(unix)]
fn read_at(m: &MappedFile, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    m.file.read_exact_at(buf, offset)
}

#[cfg(not(unix))]
fn read_at(m: &MappedFile, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    let start = offset as usize;
    buf.copy_from_slice(&m.map[start..start + buf.len()]);
    Ok(())
}

/// A CSV file with a header, every column parsed as floats (or the first cell that is not a
/// number, kept for the error if the column is used).
#[derive(Debug)]
pub struct CsvTable {
    /// Column names from the header.
    pub header: Vec<String>,
    /// Values per column.
    pub columns: Vec<Vec<f64>>,
    /// Per column: the first cell that is not a number, as (data row from 1, text); it is on
    /// line row + 1 of the file.
    pub bad: Vec<Option<(usize, String)>>,
    /// Data rows.
    pub rows: usize,
}

/// Identity of a file's content for the caches: canonical path, length and modification time
/// (a rewritten file is read again).
type FileKey = (PathBuf, u64, Option<SystemTime>);

fn file_key(path: &Path) -> Result<FileKey> {
    let meta = std::fs::metadata(path).map_err(|e| missing(path, e))?;
    let canon = path.canonicalize().map_err(|e| missing(path, e))?;
    Ok((canon, meta.len(), meta.modified().ok()))
}

fn missing(path: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::Data {
            path: path.into(),
            message: "no such file".into(),
        }
    } else {
        Error::io(path, e)
    }
}

/// A process-wide cache of shared values by key, holding them weakly: tasks built together
/// share one copy; once every task is dropped the memory is freed.
struct Cache<K, V>(OnceLock<Mutex<HashMap<K, Weak<V>>>>);

impl<K: std::hash::Hash + Eq + Clone, V> Cache<K, V> {
    const fn new() -> Self {
        Cache(OnceLock::new())
    }

    fn get_or(&self, key: K, load: impl FnOnce() -> Result<V>) -> Result<Arc<V>> {
        let map = self.0.get_or_init(Default::default);
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = map.get(&key).and_then(Weak::upgrade) {
            return Ok(v);
        }
        // Loading under the lock: concurrent first loads of one file read it once.
        let v = Arc::new(load()?);
        map.retain(|_, w| w.strong_count() > 0);
        map.insert(key, Arc::downgrade(&v));
        Ok(v)
    }
}

static MAPPED: Cache<FileKey, MappedFile> = Cache::new();
static INFLATED: Cache<(FileKey, String), Vec<u8>> = Cache::new();
static CSV: Cache<FileKey, CsvTable> = Cache::new();

/// Maps `path` (once per process while any task holds it).
pub fn map_file(path: &Path) -> Result<Arc<MappedFile>> {
    let key = file_key(path)?;
    MAPPED.get_or(key, || {
        let file = File::open(path).map_err(|e| missing(path, e))?;
        // SAFETY: the mapping is read-only; a file truncated by another process while
        // training would fault, as with any memory-mapped reader (numpy's mmap_mode too).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        // Batches read scattered rows: no read-ahead.
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Random);
        Ok(MappedFile {
            map,
            file,
            touched: AtomicUsize::new(0),
        })
    })
}

/// The file formats, by extension (or a folder of `.npy` files).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A folder holding `<name>.npy` per array.
    NpyFolder,
    /// A numpy zip archive.
    Npz,
    /// safetensors.
    Safetensors,
    /// CSV with a header row.
    Csv,
}

/// What `path` is, or an error saying which forms are read.
pub fn format_of(path: &Path) -> Result<Format> {
    if path.is_dir() {
        return Ok(Format::NpyFolder);
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "npz" => Ok(Format::Npz),
        "safetensors" => Ok(Format::Safetensors),
        "csv" => Ok(Format::Csv),
        _ if !path.exists() => Err(match std::fs::metadata(path) {
            // A symlink loop or an unreadable folder is not a missing file: say what it is.
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Error::io(path, e),
            _ => Error::Data {
                path: path.into(),
                message: "no such file or folder".into(),
            },
        }),
        "npy" => Err(Error::Data {
            path: path.into(),
            message: "a .npy file holds one array, but a task needs inputs and targets: name the folder holding x.npy and y.npy, or save both with np.savez".into(),
        }),
        _ => Err(Error::Data {
            path: path.into(),
            message: "is not a .npz, .safetensors or .csv file, nor a folder of .npy files".into(),
        }),
    }
}

/// Array `name` of the file or folder `path` (for CSV, `name` lists columns: see
/// [`open_csv_columns`]).
pub fn open(path: &Path, name: &str) -> Result<Array> {
    match format_of(path)? {
        Format::NpyFolder => open_npy(&path.join(format!("{name}.npy")), name),
        Format::Npz => open_npz(path, name),
        Format::Safetensors => open_safetensors(path, name),
        Format::Csv => Err(Error::Data {
            path: path.into(),
            message: "internal: CSV columns are opened with open_csv_columns".into(),
        }),
    }
}

/// A `.npy` file.
pub fn open_npy(path: &Path, name: &str) -> Result<Array> {
    if let Err(e) = std::fs::metadata(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(Error::io(path, e));
    }
    if !path.is_file() {
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut found: Vec<String> = std::fs::read_dir(dir)
            .map(|it| {
                it.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .filter_map(|n| n.strip_suffix(".npy").map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        return Err(Error::Data {
            path: path.into(),
            message: format!(
                "no such file (array `{name}`); the folder holds arrays: {}",
                list_or_none(&found)
            ),
        });
    }
    let m = map_file(path)?;
    let what = format!("array `{name}`");
    let (dtype, shape, offset) = parse_npy(&m.map).map_err(|message| Error::Data {
        path: path.into(),
        message: format!("{what} {message}"),
    })?;
    Ok(Array {
        path: path.into(),
        what,
        dtype,
        shape,
        data: Data::Bytes {
            buf: Buffer::Mapped(m),
            offset,
        },
    })
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".into()
    } else {
        names.join(", ")
    }
}

/// What is wrong with a `.npy` array; the message follows the file's path and the array's
/// name in an [`Error::Data`] ("…/x.npy: array `x` is big-endian …").
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NpyError {
    /// No `\x93NUMPY` at the start.
    #[error("is not a .npy file (no \\x93NUMPY magic)")]
    NotNpy,
    /// The header ends before its stated length.
    #[error("is truncated inside its .npy header")]
    TruncatedHeader,
    /// A header `npyz` cannot read (bad version, not a Python dict, a bad key or value).
    #[error("has a .npy header gatekit cannot read: {0}")]
    BadHeader(String),
    /// `dtype=object`.
    #[error(
        "holds Python objects (dtype '{0}', e.g. a ragged list of rows); save a rectangular numeric array ({SUPPORTED})"
    )]
    Objects(String),
    /// A dtype gatekit does not read.
    #[error(
        "has unsupported dtype '{0}'; supported: {SUPPORTED} (convert with a.astype(np.float32))"
    )]
    UnsupportedDtype(String),
    /// Big-endian multi-byte elements.
    #[error(
        "is big-endian (dtype '{0}'); gatekit reads little-endian: save a.astype(a.dtype.newbyteorder('<'))"
    )]
    BigEndian(String),
    /// Record fields.
    #[error("has a structured dtype (record fields); supported: {SUPPORTED}")]
    Structured,
    /// Column-major data.
    #[error(
        "is Fortran-ordered (column-major); gatekit reads C order: save np.ascontiguousarray(a)"
    )]
    Fortran,
    /// More bytes than a `usize` counts.
    #[error("has a shape too large to address")]
    TooLarge,
    /// Less data than the shape needs.
    #[error(
        "is truncated: shape {shape:?} of {dtype} needs {need} bytes of data, the file holds {available}"
    )]
    Truncated {
        /// The header's shape.
        shape: Vec<usize>,
        /// numpy's name of the element type.
        dtype: &'static str,
        /// Bytes the shape needs.
        need: usize,
        /// Bytes there are.
        available: usize,
    },
}

/// Parses a `.npy` header with `npyz`: dtype, shape and where the data starts; checks the data
/// is there. The data itself is not read here: callers read it from their memory map.
pub fn parse_npy(bytes: &[u8]) -> std::result::Result<(Dtype, Vec<usize>, usize), NpyError> {
    if !bytes.starts_with(b"\x93NUMPY") {
        return Err(NpyError::NotNpy);
    }
    let mut rest = bytes;
    let header = npyz::NpyHeader::from_reader(&mut rest).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            NpyError::TruncatedHeader
        } else {
            NpyError::BadHeader(e.to_string())
        }
    })?;
    let offset = bytes.len() - rest.len();
    let descr = match header.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        npyz::DType::Array(..) | npyz::DType::Record(_) => return Err(NpyError::Structured),
    };
    let dtype = Dtype::from_npy(&descr)?;
    if header.order() == npyz::Order::Fortran {
        return Err(NpyError::Fortran);
    }
    let shape = header
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| NpyError::TooLarge))
        .collect::<std::result::Result<Vec<usize>, _>>()?;
    check_length(&shape, dtype, rest.len())?;
    Ok((dtype, shape, offset))
}

fn check_length(
    shape: &[usize],
    dtype: Dtype,
    available: usize,
) -> std::result::Result<(), NpyError> {
    let need = shape
        .iter()
        .try_fold(dtype.size(), |a, &d| a.checked_mul(d))
        .ok_or(NpyError::TooLarge)?;
    if available < need {
        return Err(NpyError::Truncated {
            shape: shape.to_vec(),
            dtype: dtype.name(),
            need,
            available,
        });
    }
    Ok(())
}

/// Member `name` (`name.npy`) of a `.npz`.
pub fn open_npz(path: &Path, name: &str) -> Result<Array> {
    let m = map_file(path)?;
    let bad = |message: String| Error::Data {
        path: path.into(),
        message,
    };
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&m.map[..]))
        .map_err(|e| bad(format!("is not a readable .npz (zip) archive: {e}")))?;
    let member = format!("{name}.npy");
    let Some(index) = zip
        .index_for_name(&member)
        .or_else(|| zip.index_for_name(name))
    else {
        let mut names: Vec<String> = zip
            .file_names()
            .filter_map(|n| n.ok())
            .map(|n| n.strip_suffix(".npy").unwrap_or(&n).to_string())
            .collect();
        names.sort();
        return Err(bad(format!(
            "has no array `{name}`; its arrays are: {}",
            list_or_none(&names)
        )));
    };
    let what = format!("array `{name}`");
    let entry = zip
        .by_index_raw(index)
        .map_err(|e| bad(format!("{what}: unreadable zip entry: {e}")))?;
    let start = entry
        .data_start()
        .ok_or_else(|| bad(format!("{what}: zip entry without a data offset")))?
        as usize;
    let (csize, usize_) = (entry.compressed_size() as usize, entry.size() as usize);
    let method = entry.compression();
    drop(entry);
    let raw = m
        .map
        .get(start..start.saturating_add(csize))
        .ok_or_else(|| {
            bad(format!(
                "{what}: the zip entry runs past the end of the file"
            ))
        })?;
    // Compared with the constants: the enum's variants depend on zip's features.
    let (buf, base) = if method == zip::CompressionMethod::STORE {
        (Buffer::Mapped(Arc::clone(&m)), start)
    } else if method == zip::CompressionMethod::DEFLATE {
        let key = (file_key(path)?, name.to_string());
        let inflated = INFLATED.get_or(key, || {
            use std::io::Read;
            let mut out = Vec::with_capacity(usize_);
            flate2::read::DeflateDecoder::new(raw)
                .read_to_end(&mut out)
                .map_err(|e| bad(format!("{what}: cannot inflate: {e}")))?;
            Ok(out)
        })?;
        (Buffer::Owned(inflated), 0)
    } else {
        return Err(bad(format!(
            "{what} is compressed with {method:?}; supported: stored (np.savez) or deflate (np.savez_compressed)"
        )));
    };
    let bytes = match &buf {
        Buffer::Mapped(_) => raw,
        Buffer::Owned(v) => &v[..],
    };
    let (dtype, shape, offset) =
        parse_npy(bytes).map_err(|message| bad(format!("{what} {message}")))?;
    Ok(Array {
        path: path.into(),
        what,
        dtype,
        shape,
        data: Data::Bytes {
            buf,
            offset: base + offset,
        },
    })
}

/// Tensor `name` of a safetensors file.
pub fn open_safetensors(path: &Path, name: &str) -> Result<Array> {
    let m = map_file(path)?;
    let bad = |message: String| Error::Data {
        path: path.into(),
        message,
    };
    let st = safetensors::SafeTensors::deserialize(&m.map)
        .map_err(|e| bad(format!("is not a readable safetensors file: {e}")))?;
    let what = format!("tensor `{name}`");
    let view = st.tensor(name).map_err(|_| {
        let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
        names.sort();
        bad(format!(
            "has no tensor `{name}`; its tensors are: {}",
            list_or_none(&names)
        ))
    })?;
    let dtype = Dtype::from_safetensors(view.dtype()).ok_or_else(|| {
        bad(format!(
            "{what} has unsupported dtype {:?}; supported: {SUPPORTED}",
            view.dtype()
        ))
    })?;
    let offset = view.data().as_ptr() as usize - m.map.as_ptr() as usize;
    let shape = view.shape().to_vec();
    check_length(&shape, dtype, view.data().len()).map_err(|e| bad(format!("{what} {e}")))?;
    drop(st);
    Ok(Array {
        path: path.into(),
        what,
        dtype,
        shape,
        data: Data::Bytes {
            buf: Buffer::Mapped(m),
            offset,
        },
    })
}

/// The parsed CSV file at `path` (once per process while any task holds it).
pub fn load_csv(path: &Path) -> Result<Arc<CsvTable>> {
    let key = file_key(path)?;
    CSV.get_or(key, || read_csv(path))
}

fn read_csv(path: &Path) -> Result<CsvTable> {
    let bad = |message: String| Error::Data {
        path: path.into(),
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| match e.into_kind() {
            csv::ErrorKind::Io(io) => missing(path, io),
            other => bad(format!("cannot read CSV: {other:?}")),
        })?;
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| bad(format!("cannot read the CSV header: {e}")))?
        .iter()
        .map(str::to_string)
        .collect();
    if header.is_empty() || header.iter().all(String::is_empty) {
        return Err(bad("has no header row naming its columns".into()));
    }
    let mut columns = vec![Vec::new(); header.len()];
    let mut bad_cells: Vec<Option<(usize, String)>> = vec![None; header.len()];
    let mut rows = 0;
    for record in reader.records() {
        let record = record.map_err(|e| match e.kind() {
            csv::ErrorKind::UnequalLengths {
                pos,
                expected_len,
                len,
            } => bad(format!(
                "line {} has {len} cells but the header has {expected_len} columns (ragged CSV)",
                pos.as_ref().map_or(rows + 2, |p| p.line() as usize)
            )),
            _ => bad(format!("cannot read CSV line {}: {e}", rows + 2)),
        })?;
        rows += 1;
        for (c, cell) in record.iter().enumerate() {
            let v = cell.parse::<f64>().unwrap_or_else(|_| {
                if bad_cells[c].is_none() {
                    bad_cells[c] = Some((rows, cell.to_string()));
                }
                f64::NAN
            });
            columns[c].push(v);
        }
    }
    Ok(CsvTable {
        header,
        columns,
        bad: bad_cells,
        rows,
    })
}

/// Columns of a CSV file as one array `[rows, columns]` (or `[rows]` for one column when
/// `vector`). `names` is a comma-separated list of header names, or `*` for every column not in
/// `exclude`.
pub fn open_csv_columns(path: &Path, names: &str, exclude: &[&str], vector: bool) -> Result<Array> {
    let table = load_csv(path)?;
    let wanted: Vec<String> = if names.trim() == "*" {
        table
            .header
            .iter()
            .filter(|h| !exclude.contains(&h.as_str()))
            .cloned()
            .collect()
    } else {
        names
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    if wanted.is_empty() {
        return Err(Error::Data {
            path: path.into(),
            message: format!(
                "selects no columns with \"{names}\"; its columns are: {}",
                table.header.join(", ")
            ),
        });
    }
    let mut cols = Vec::with_capacity(wanted.len());
    for w in &wanted {
        let c = table
            .header
            .iter()
            .position(|h| h == w)
            .ok_or_else(|| Error::Data {
                path: path.into(),
                message: format!(
                    "has no column `{w}`; its columns are: {}",
                    table.header.join(", ")
                ),
            })?;
        if let Some((row, text)) = &table.bad[c] {
            return Err(Error::Data {
                path: path.into(),
                message: format!("line {}, column `{w}`: \"{text}\" is not a number", row + 1),
            });
        }
        cols.push(c);
    }
    let what = if wanted.len() == 1 {
        format!("column `{}`", wanted[0])
    } else {
        format!("columns {}", wanted.join(", "))
    };
    let shape = if vector && cols.len() == 1 {
        vec![table.rows]
    } else {
        vec![table.rows, cols.len()]
    };
    Ok(Array {
        path: path.into(),
        what,
        dtype: Dtype::F64,
        shape,
        data: Data::Columns { table, cols },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut h = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn npy_headers_parse_and_bad_ones_say_why() {
        let data: Vec<u8> = [1.5f32, -2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let bytes = npy("<f4", false, "(3, 2)", &data);
        let (dt, shape, off) = parse_npy(&bytes).unwrap();
        assert_eq!((dt, shape.clone()), (Dtype::F32, vec![3, 2]));
        assert_eq!((off, off % 64), (bytes.len() - 24, 0));
        let mut out = [0.0; 2];
        dt.decode(&bytes[off + 8..off + 16], &mut out);
        assert_eq!(out, [3.0, 4.0]);
        let e = parse_npy(&npy("<f4", true, "(3, 2)", &data)).unwrap_err();
        assert_eq!(e, NpyError::Fortran);
        let e = parse_npy(&npy(">f4", false, "(3, 2)", &data)).unwrap_err();
        assert!(e.to_string().contains("big-endian"), "{e}");
        let e = parse_npy(&npy("<f2", false, "(3, 2)", &data)).unwrap_err();
        assert!(e.to_string().contains("unsupported dtype '<f2'"), "{e}");
        let e = parse_npy(&npy("|O", false, "(3,)", &data)).unwrap_err();
        assert!(e.to_string().contains("ragged"), "{e}");
        let e = parse_npy(&npy("<f4", false, "(4, 2)", &data)).unwrap_err();
        let e = e.to_string();
        assert!(e.contains("truncated") && e.contains("32 bytes"), "{e}");
        let e = parse_npy(b"\x93NUMPY\x01\x00\x40\x00{'descr'").unwrap_err();
        assert_eq!(e, NpyError::TruncatedHeader);
        assert_eq!(parse_npy(b"PK\x03\x04 not npy"), Err(NpyError::NotNpy));
        let (_, shape, _) = parse_npy(&npy("<i8", false, "(0,)", &[])).unwrap();
        assert_eq!(shape, vec![0]);
        let (_, shape, _) = parse_npy(&npy("|u1", false, "()", &[7])).unwrap();
        assert!(shape.is_empty());
    }

    #[test]
    fn every_dtype_decodes() {
        let mut out = [0.0; 2];
        Dtype::I16.decode(&[0xff, 0xff, 2, 0], &mut out);
        assert_eq!(out, [-1.0, 2.0]);
        Dtype::U64.decode(&[5, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0], &mut out);
        assert_eq!(out, [5.0, 257.0]);
        Dtype::F64.decode(
            &[0.25f64.to_le_bytes(), (-8.0f64).to_le_bytes()].concat(),
            &mut out,
        );
        assert_eq!(out, [0.25, -8.0]);
    }
}
