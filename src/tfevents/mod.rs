//! TensorBoard event files (`events.out.tfevents.<time>.<host>`), written without TensorFlow:
//! TFRecord framing with masked CRC-32C (the `crc32c` crate, which uses the CPU's CRC
//! instruction where there is one) around `Event` protobuf messages encoded by prost.
//!
//! The message structs below are written by hand with the field numbers of TensorFlow's
//! `event.proto` and `summary.proto`, only the fields gatekit writes. (The one Rust crate for
//! this, tensorboard-rs, pulls protobuf 2.28 with advisory RUSTSEC-2024-0437.)
//!
//! This module knows the file format only; what a run logs is in [`crate::train`]'s
//! `TensorBoardSink` (the trainer streams into it) and its `write_events`.

pub mod hparams;

use crate::error::{Error, Result};
use prost::Message;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The masked CRC-32C TFRecord stores: rotating and offsetting keeps a CRC of data that
/// itself contains CRCs from being trivially zero-sum.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
        .rotate_right(15)
        .wrapping_add(0xa282_ead8)
}

/// The protobuf messages of a TensorBoard event file (subset of TensorFlow's protos).
pub mod proto {
    /// One record of an event file (`tensorflow.Event`).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Event {
        /// Seconds since the Unix epoch.
        #[prost(double, tag = "1")]
        pub wall_time: f64,
        /// Global step the event belongs to.
        #[prost(int64, tag = "2")]
        pub step: i64,
        /// Set only in the first event of a file: `"brain.Event:2"`.
        #[prost(string, tag = "3")]
        pub file_version: String,
        /// Scalars and histograms.
        #[prost(message, optional, tag = "5")]
        pub summary: Option<Summary>,
    }

    /// A set of tagged values at one step (`tensorflow.Summary`).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Summary {
        /// The values.
        #[prost(message, repeated, tag = "1")]
        pub value: Vec<Value>,
    }

    /// One tagged value (`tensorflow.Summary.Value`): a scalar or a histogram.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Value {
        /// The series name, e.g. `gated/red/test/accuracy`.
        #[prost(string, tag = "1")]
        pub tag: String,
        /// A scalar. Explicit presence, so that a value of exactly 0 is still written.
        #[prost(float, optional, tag = "2")]
        pub simple_value: Option<f32>,
        /// A histogram.
        #[prost(message, optional, tag = "5")]
        pub histo: Option<HistogramProto>,
        /// What a plugin needs to read the value (the hparams plugin's summaries are
        /// metadata only).
        #[prost(message, optional, tag = "9")]
        pub metadata: Option<SummaryMetadata>,
    }

    /// `tensorflow.SummaryMetadata`: which plugin a value belongs to.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SummaryMetadata {
        /// The plugin and its data.
        #[prost(message, optional, tag = "1")]
        pub plugin_data: Option<PluginData>,
    }

    /// `tensorflow.SummaryMetadata.PluginData`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PluginData {
        /// e.g. `hparams`.
        #[prost(string, tag = "1")]
        pub plugin_name: String,
        /// The plugin's own protobuf message, serialized.
        #[prost(bytes = "vec", tag = "2")]
        pub content: Vec<u8>,
    }

    /// A histogram (`tensorflow.HistogramProto`): bucket `i` counts the values in
    /// `(bucket_limit[i-1], bucket_limit[i]]`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HistogramProto {
        /// Smallest value.
        #[prost(double, tag = "1")]
        pub min: f64,
        /// Largest value.
        #[prost(double, tag = "2")]
        pub max: f64,
        /// Number of values.
        #[prost(double, tag = "3")]
        pub num: f64,
        /// Sum of the values.
        #[prost(double, tag = "4")]
        pub sum: f64,
        /// Sum of the squared values.
        #[prost(double, tag = "5")]
        pub sum_squares: f64,
        /// Right edge of every bucket.
        #[prost(double, repeated, tag = "6")]
        pub bucket_limit: Vec<f64>,
        /// Count of every bucket.
        #[prost(double, repeated, tag = "7")]
        pub bucket: Vec<f64>,
    }
}

use proto::{Event, HistogramProto, Summary, Value};

/// The folder inside a run that holds its event files (what `tensorboard --logdir` reads).
pub const TB_DIR: &str = "tb";

/// One TFRecord: `u64` length, masked CRC-32C of the length bytes, the data, masked CRC-32C
/// of the data (all little-endian).
pub fn frame_record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// Splits a TFRecord file's bytes into its records, checking both CRCs of each; `path` is for
/// messages. The inverse of [`frame_record`], used to check written files.
pub fn read_records(bytes: &[u8], path: &Path) -> Result<Vec<Vec<u8>>> {
    let bad = |at: usize, what: &str| Error::Data {
        path: path.into(),
        message: format!("TFRecord at byte {at}: {what}"),
    };
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let head = bytes
            .get(at..at + 12)
            .ok_or_else(|| bad(at, "truncated header"))?;
        let (len_bytes, len_crc) = head.split_at(8);
        if masked_crc32c(len_bytes).to_le_bytes() != len_crc {
            return Err(bad(at, "length CRC mismatch"));
        }
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap_or([0; 8]));
        let len = usize::try_from(len).map_err(|_| bad(at, "length overflows"))?;
        let end = at
            .checked_add(12 + len + 4)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| bad(at, "truncated data"))?;
        let data = &bytes[at + 12..at + 12 + len];
        if masked_crc32c(data).to_le_bytes() != bytes[end - 4..end] {
            return Err(bad(at, "data CRC mismatch"));
        }
        out.push(data.to_vec());
        at = end;
    }
    Ok(out)
}

/// Reads and decodes every event of an event file (CRCs checked).
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    read_records(&bytes, path)?
        .iter()
        .map(|r| {
            Event::decode(r.as_slice()).map_err(|e| Error::Data {
                path: path.into(),
                message: format!("not an Event message: {e}"),
            })
        })
        .collect()
}

/// The event files (`*tfevents*`) in `dir`, sorted by name; none if `dir` does not exist.
pub fn event_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("events.out.tfevents."))
        })
        .collect();
    out.sort();
    out
}

/// Seconds since the Unix epoch (event wall times and file names).
pub fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The host name for event file names (TensorBoard shows it as the file's origin); only
/// characters that are safe in a file name are kept.
pub fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    let clean: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    if clean.is_empty() {
        "localhost".into()
    } else {
        clean
    }
}

/// Appends events to one TensorBoard event file. Every event is framed and written as it comes;
/// [`TfEventsWriter::flush`] pushes them to the OS so a running TensorBoard sees them.
pub struct TfEventsWriter {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl std::fmt::Debug for TfEventsWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TfEventsWriter")
            .field("path", &self.path)
            .finish()
    }
}

impl TfEventsWriter {
    /// A new event file `events.out.tfevents.<unix seconds>.<host>` in `dir` (created if
    /// missing). A second writer started in the same second gets a numbered suffix instead of
    /// overwriting the first.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let base = format!(
            "events.out.tfevents.{}.{}",
            now_seconds().floor() as u64,
            host_name()
        );
        let mut path = dir.join(&base);
        let mut n = 1;
        while path.exists() {
            path = dir.join(format!("{base}.{n}"));
            n += 1;
        }
        Self::create_file(&path)
    }

    /// A new event file at exactly `path` (replacing what is there).
    pub fn create_file(path: &Path) -> Result<Self> {
        let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        let mut w = TfEventsWriter {
            path: path.into(),
            file: std::io::BufWriter::new(file),
        };
        w.write_event(&Event {
            wall_time: now_seconds(),
            file_version: "brain.Event:2".into(),
            ..Event::default()
        })?;
        Ok(w)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one event.
    pub fn write_event(&mut self, event: &Event) -> Result<()> {
        self.file
            .write_all(&frame_record(&event.encode_to_vec()))
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Writes the values of one step as one event.
    pub fn write_values(&mut self, step: usize, values: Vec<Value>) -> Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        self.write_event(&Event {
            wall_time: now_seconds(),
            step: i64::try_from(step).unwrap_or(i64::MAX),
            summary: Some(Summary { value: values }),
            ..Event::default()
        })
    }

    /// Logs one scalar (stored as f32, TensorBoard's scalar type).
    pub fn add_scalar(&mut self, tag: &str, step: usize, value: f64) -> Result<()> {
        self.write_values(step, vec![scalar(tag, value)])
    }

    /// Logs one histogram of equal-width bins over `[lo, hi]`.
    pub fn add_histogram(
        &mut self,
        tag: &str,
        step: usize,
        lo: f64,
        hi: f64,
        counts: &[u32],
    ) -> Result<()> {
        self.write_values(step, vec![histogram(tag, lo, hi, counts)])
    }

    /// Pushes buffered events to the file.
    pub fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| Error::io(&self.path, e))
    }

    /// Flushes and syncs the file to disk, then closes it.
    pub fn finish(mut self) -> Result<PathBuf> {
        self.flush()?;
        self.file
            .get_ref()
            .sync_all()
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(self.path)
    }
}

/// A scalar value.
pub fn scalar(tag: &str, value: f64) -> Value {
    Value {
        tag: tag.into(),
        simple_value: Some(value as f32),
        histo: None,
        metadata: None,
    }
}

/// A histogram value from equal-width bins over `[lo, hi]`; sum and sum of squares are
/// estimated from the bin centres (the snapshots keep no raw values).
pub fn histogram(tag: &str, lo: f64, hi: f64, counts: &[u32]) -> Value {
    let n = counts.len().max(1);
    let width = (hi - lo) / n as f64;
    let (mut num, mut sum, mut sum_squares) = (0.0, 0.0, 0.0);
    let mut limits = Vec::with_capacity(counts.len());
    let mut buckets = Vec::with_capacity(counts.len());
    for (i, &c) in counts.iter().enumerate() {
        let c = f64::from(c);
        let centre = lo + (i as f64 + 0.5) * width;
        num += c;
        sum += c * centre;
        sum_squares += c * centre * centre;
        limits.push(lo + (i as f64 + 1.0) * width);
        buckets.push(c);
    }
    Value {
        tag: tag.into(),
        simple_value: None,
        histo: Some(HistogramProto {
            min: lo,
            max: hi,
            num,
            sum,
            sum_squares,
            bucket_limit: limits,
            bucket: buckets,
        }),
        metadata: None,
    }
}

#[cfg(test)]
mod tests {
    /// The crate's CRC-32C is the Castagnoli one TFRecord needs (known vectors, RFC 3720
    /// appendix B.4), and the mask is TFRecord's.
    #[test]
    fn crc32c_known_vectors_and_mask() {
        use crc32c::crc32c;
        assert_eq!(crc32c(b""), 0);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
        let up: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&up), 0x46DD_794E);
        let down: Vec<u8> = (0..32).rev().collect();
        assert_eq!(crc32c(&down), 0x113F_DB5C);
        // 0xE306_9283 rotated right by 15 plus 0xa282_ead8, by hand.
        assert_eq!(
            masked_crc32c(b"123456789"),
            0xE306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8)
        );
        assert_eq!(0xE306_9283u32.rotate_right(15), 0x2507_C60D);
    }

    use super::*;

    #[test]
    fn frames_round_trip_and_detect_corruption() {
        let a = frame_record(b"hello");
        let b = frame_record(b"");
        let mut bytes = a.clone();
        bytes.extend_from_slice(&b);
        let back = read_records(&bytes, Path::new("x")).expect("valid");
        assert_eq!(back, vec![b"hello".to_vec(), Vec::new()]);
        assert_eq!(a.len(), 8 + 4 + 5 + 4);
        let mut broken = a.clone();
        broken[13] ^= 1;
        assert!(read_records(&broken, Path::new("x")).is_err());
        assert!(read_records(&a[..a.len() - 1], Path::new("x")).is_err());
    }

    #[test]
    fn zero_scalar_is_encoded() {
        let v = scalar("t", 0.0);
        let back = Value::decode(v.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(back.simple_value, Some(0.0));
    }
}
