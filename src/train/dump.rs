//! `gtk data dump`: a task's examples exactly as the model sees them (after the kind's
//! preprocessing: scale, padding, colour, permutation, standardisation) with their labels, as
//! numpy files. What an exported ONNX model needs as input, so it can be fed from any language
//! without re-implementing the preprocessing, and checked against `gtk eval --onnx`.
//!
//! Output: `--out FILE.npy` writes the inputs to `FILE.npy` (float32 `[n, ..input shape]`) and
//! the targets to `FILE.labels.npy` (int64 `[n]` labels, or float32 `[n, outputs]` regression
//! targets); `--out FILE.npz` writes both into one uncompressed archive as `x` and `y` (which a
//! `tensors` task reads as it is). Existing files are never replaced, and nothing is left
//! half-written: each file is written under a temporary name and linked into place only if
//! the name is still free.

use super::TaskSet;
use crate::error::{Error, Result};
use crate::run_folder::{fsio, is_run_folder};
use crate::task::{Objective, Split};
use candle_core::{DType, Device};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What to dump.
#[derive(Debug, Clone)]
pub struct DumpSpec<'a> {
    /// The task's name; `None` is allowed when the set has one task.
    pub task: Option<&'a str>,
    /// Which split.
    pub split: Split,
    /// The first `n` examples of the split; `None` = all of them.
    pub examples: Option<usize>,
    /// `FILE.npy` (plus `FILE.labels.npy`) or `FILE.npz`.
    pub out: &'a Path,
    /// Dataset folder (else `$GATEKIT_DATA`).
    pub data_dir: Option<&'a Path>,
}

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Dumped {
    /// The task dumped.
    pub task: String,
    /// The files written, inputs first.
    pub files: Vec<PathBuf>,
    /// Number of examples.
    pub examples: usize,
    /// Shape of one input example.
    pub input_shape: Vec<usize>,
    /// Classification (int64 labels) or regression (float32 targets).
    pub objective: Objective,
}

/// Examples per batch while writing: bounds memory for large splits.
const CHUNK: usize = 512;

/// Dumps examples of a task of `source`: a task-set file, or a run folder (its `config.toml`:
/// the set as trained, with the statistics the run stored, so the inputs are the ones its
/// models saw).
pub fn dump_examples(source: &Path, spec: &DumpSpec) -> Result<Dumped> {
    let set = if source.is_dir() && is_run_folder(source) {
        super::read_run_config(source)?
    } else if source.is_dir() {
        return Err(Error::Run {
            path: source.into(),
            message: "is a folder but not a run folder (no config.toml or state.json); give a task-set file or a run folder".into(),
        });
    } else {
        TaskSet::load(source)?
    };
    let outputs = output_files(spec.out)?;
    let names = set.task_names();
    let index = chosen_task(source, &names, spec.task)?;
    let tasks = set.build_tasks(spec.data_dir)?;
    let task = tasks[index].as_ref();
    let len = task.len(spec.split);
    let n = match spec.examples {
        None => len,
        Some(n) if n >= 1 && n <= len => n,
        Some(n) => {
            return Err(Error::config(
                "command line",
                "-n",
                format!(
                    "is {n}, but task `{}`'s {} split has {len} examples; give 1 to {len}, or leave it out for all",
                    task.name(),
                    spec.split.as_str()
                ),
            ));
        }
    };
    let input_shape = task.input_shape().to_vec();
    let objective = task.objective();
    let per: usize = input_shape.iter().product();
    let mut x_shape = vec![n];
    x_shape.extend_from_slice(&input_shape);
    let y_shape = match objective {
        Objective::Classification => vec![n],
        Objective::Regression => vec![n, task.outputs()],
    };
    // Built in memory (the whole MNIST test split as LeNet-5 inputs is 123 MB) by npyz's
    // writers, read from the task in chunks so the task's own buffers stay small.
    let failed = |e: std::io::Error| Error::io(spec.out, e);
    let dims = |shape: &[usize]| shape.iter().map(|&d| d as u64).collect::<Vec<u64>>();
    let mut x_bytes = Vec::with_capacity(n * per * 4 + 128);
    let mut y_bytes = Vec::new();
    {
        let mut xw = npy_writer::<f32>(&dims(&x_shape), &mut x_bytes).map_err(failed)?;
        let (mut labels, mut targets) = match objective {
            Objective::Classification => (
                Some(npy_writer::<i64>(&dims(&y_shape), &mut y_bytes).map_err(failed)?),
                None,
            ),
            Objective::Regression => (
                None,
                Some(npy_writer::<f32>(&dims(&y_shape), &mut y_bytes).map_err(failed)?),
            ),
        };
        for from in (0..n).step_by(CHUNK) {
            let idx: Vec<usize> = (from..n.min(from + CHUNK)).collect();
            let b = task.batch(spec.split, &idx, &Device::Cpu, DType::F32)?;
            let xs: Vec<f32> = b.x.flatten_all()?.to_vec1()?;
            xw.extend(xs).map_err(failed)?;
            if let Some(w) = &mut labels {
                let ys: Vec<u32> = b.y.to_vec1()?;
                w.extend(ys.into_iter().map(i64::from)).map_err(failed)?;
            }
            if let Some(w) = &mut targets {
                let ys: Vec<f32> = b.y.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
                w.extend(ys).map_err(failed)?;
            }
        }
        // `finish` checks that the element count matches the header's shape.
        xw.finish().map_err(failed)?;
        if let Some(w) = labels {
            w.finish().map_err(failed)?;
        }
        if let Some(w) = targets {
            w.finish().map_err(failed)?;
        }
    }
    match &outputs {
        Outputs::Npy { x, labels } => write_new(&[
            (x.as_path(), x_bytes.as_slice()),
            (labels.as_path(), y_bytes.as_slice()),
        ])?,
        Outputs::Npz(path) => {
            let archive = npz(path, &[("x", &x_bytes), ("y", &y_bytes)])?;
            write_new(&[(path.as_path(), archive.as_slice())])?
        }
    }
    Ok(Dumped {
        task: task.name().to_string(),
        files: match outputs {
            Outputs::Npy { x, labels } => vec![x, labels],
            Outputs::Npz(path) => vec![path],
        },
        examples: n,
        input_shape,
        objective,
    })
}

/// The position of `--task` among `names` (it may be left out when there is one task).
fn chosen_task(source: &Path, names: &[String], task: Option<&str>) -> Result<usize> {
    Ok(match task {
        Some(t) => names.iter().position(|n| n == t).ok_or_else(|| {
            Error::config(
                "command line",
                "--task",
                format!(
                    "`{t}` is not a task of {}; its tasks: {}",
                    source.display(),
                    names.join(", ")
                ),
            )
        })?,
        None if names.len() == 1 => 0,
        None => {
            return Err(Error::config(
                "command line",
                "--task",
                format!(
                    "is needed: {} has {} tasks ({})",
                    source.display(),
                    names.len(),
                    names.join(", ")
                ),
            ));
        }
    })
}

enum Outputs {
    Npy { x: PathBuf, labels: PathBuf },
    Npz(PathBuf),
}

/// The files `--out` stands for, refused before any work if one exists or the folder does not.
fn output_files(out: &Path) -> Result<Outputs> {
    let bad = |message: String| Error::config("command line", "--out", message);
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("");
    let outputs = match ext {
        "npy" => {
            let stem = out.file_stem().and_then(|s| s.to_str()).unwrap_or("x");
            Outputs::Npy {
                x: out.to_path_buf(),
                labels: out.with_file_name(format!("{stem}.labels.npy")),
            }
        }
        "npz" => Outputs::Npz(out.to_path_buf()),
        _ => {
            return Err(bad(format!(
                "is {}: name a .npy file (the inputs; the labels go to NAME.labels.npy next to it) or a .npz file (both, as x and y)",
                out.display()
            )));
        }
    };
    let files: Vec<&Path> = match &outputs {
        Outputs::Npy { x, labels } => vec![x, labels],
        Outputs::Npz(p) => vec![p],
    };
    for f in files {
        if std::fs::symlink_metadata(f).is_ok() {
            return Err(bad(format!(
                "{} already exists; gtk data dump never replaces a file: remove it or choose another --out",
                f.display()
            )));
        }
        let dir = f
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return Err(bad(format!(
                "{}: the folder {} does not exist; create it first",
                f.display(),
                dir.display()
            )));
        }
    }
    Ok(outputs)
}

/// An npyz writer of a C-order little-endian `.npy` of `shape` into `out` (numpy's header,
/// the data aligned to 64 bytes).
fn npy_writer<'a, T: npyz::AutoSerialize>(
    shape: &[u64],
    out: &'a mut Vec<u8>,
) -> std::io::Result<npyz::NpyWriter<T, &'a mut Vec<u8>>> {
    use npyz::WriterBuilder;
    npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(shape)
        .writer(out)
        .begin_nd()
}

/// An uncompressed `.npz` (what `np.savez` writes) of the `.npy` images in `members`.
fn npz(path: &Path, members: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let zip_err = |e: zip::result::ZipError| Error::Data {
        path: path.into(),
        message: format!("cannot build the archive: {e}"),
    };
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(members.iter().map(|m| m.1.len()).sum::<usize>() >= u32::MAX as usize);
    for (name, bytes) in members {
        zip.start_file(format!("{name}.npy"), opts)
            .map_err(zip_err)?;
        zip.write_all(bytes).map_err(|e| Error::io(path, e))?;
    }
    Ok(zip.finish().map_err(zip_err)?.into_inner())
}

/// Writes each `(path, bytes)` under a temporary name, then links it to `path` only if that
/// name is still free (a file that appeared meanwhile is kept, and the dump fails); on any
/// failure the files this call created are removed again.
fn write_new(files: &[(&Path, &[u8])]) -> Result<()> {
    let mut created: Vec<&Path> = Vec::new();
    let result = (|| -> Result<()> {
        for &(path, bytes) in files {
            let tmp = fsio::temp_path(path);
            let written = std::fs::File::create(&tmp)
                .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
            if let Err(e) = written {
                let _ = std::fs::remove_file(&tmp);
                return Err(Error::io(&tmp, e));
            }
            let linked = std::fs::hard_link(&tmp, path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => created.push(path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(Error::config(
                        "command line",
                        "--out",
                        format!(
                            "{} appeared while the dump was written; it was left as it is",
                            path.display()
                        ),
                    ));
                }
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        Ok(())
    })();
    if result.is_err() {
        for p in created {
            let _ = std::fs::remove_file(p);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_headers_are_aligned_and_parse_back() {
        for shape in [vec![3], vec![2, 3, 32, 32], vec![10_000, 1, 28, 28]] {
            let n: usize = shape.iter().product();
            let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
            let mut bytes = Vec::new();
            let mut w = npy_writer::<f32>(&dims, &mut bytes).unwrap();
            w.extend(std::iter::repeat_n(0.5f32, n)).unwrap();
            w.finish().unwrap();
            assert_eq!(bytes.len() % 64, (4 * n) % 64);
            let (dtype, got, offset) = crate::task::tensors::array::parse_npy(&bytes).unwrap();
            assert_eq!(bytes.len(), offset + 4 * n);
            assert_eq!(got, shape);
            assert_eq!(dtype.name(), "float32");
            assert_eq!(offset % 64, 0);
        }
    }

    #[test]
    fn outputs_refuse_existing_files_and_other_extensions() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.npy");
        std::fs::write(dir.path().join("x.labels.npy"), b"mine").unwrap();
        let err = output_files(&out).err().unwrap().to_string();
        assert!(err.contains("x.labels.npy already exists"), "{err}");
        let err = output_files(&dir.path().join("x.csv"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(".npy") && err.contains(".npz"), "{err}");
        let err = output_files(&dir.path().join("no/x.npz"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
        assert!(matches!(
            output_files(&dir.path().join("y.npy")),
            Ok(Outputs::Npy { .. })
        ));
        // write_new never replaces: the existing file keeps its bytes.
        let taken = dir.path().join("x.labels.npy");
        let fresh = dir.path().join("fresh.npy");
        let a: &[u8] = b"a";
        assert!(write_new(&[(fresh.as_path(), a), (taken.as_path(), a)]).is_err());
        assert_eq!(std::fs::read(&taken).unwrap(), b"mine");
        assert!(!fresh.exists(), "the first file was not removed again");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
