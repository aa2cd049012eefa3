//! File I/O at the edges of the stages. Every write is atomic: the bytes go to a temporary file
//! in the destination's folder, which is renamed over the destination only once complete, so a
//! failed or interrupted command never leaves a half-written file behind.

pub mod json;
pub mod pickle;
pub mod routerdc_json;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::table::{LoadedTable, ScoredTable};

/// Write `path` atomically with whatever `fill` writes into the buffered temporary file.
pub fn write_atomic(path: &Path, fill: impl FnOnce(&mut BufWriter<&File>) -> Result<()>) -> Result<()> {
    let write_error = |source| Error::Write { path: path.to_path_buf(), source };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(write_error)?;
    // The usual mode of a new file (0644 under a 022 umask), not tempfile's private 0600: the
    // mode given to open(2) is narrowed by the umask.
    let temp = tempfile::Builder::new()
        .prefix(".routerdc-")
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(write_error)?;
    {
        let mut writer = BufWriter::new(temp.as_file());
        fill(&mut writer)?;
        writer.flush().map_err(write_error)?;
    }
    temp.as_file().sync_all().map_err(write_error)?;
    temp.persist(path).map_err(|error| write_error(error.error))?;
    Ok(())
}

/// A command's output files as one unit: they are written into a staging folder inside the
/// output folder, and [`Outputs::commit`] moves them all into place once every one is written.
/// A command that fails before that leaves the output folder as it was (the staging folder is
/// removed when the value is dropped, and a crash leaves only a `.routerdc-staging-*` folder,
/// which the next run of any command in that folder removes).
pub struct Outputs {
    dir: PathBuf,
    staging: tempfile::TempDir,
}

const STAGING_PREFIX: &str = ".routerdc-staging-";

impl Outputs {
    /// Stage outputs for `dir` (created if missing).
    pub fn new(dir: &Path) -> Result<Outputs> {
        let write_error = |source| Error::Write { path: dir.to_path_buf(), source };
        std::fs::create_dir_all(dir).map_err(write_error)?;
        remove_stale_staging(dir);
        let staging = tempfile::Builder::new().prefix(STAGING_PREFIX).tempdir_in(dir).map_err(write_error)?;
        Ok(Outputs { dir: dir.to_path_buf(), staging })
    }

    /// Where to write what will be `<dir>/<relative>`.
    pub fn dir(&self) -> &Path {
        self.staging.path()
    }

    /// The path a staged file will have once committed.
    pub fn final_path(&self, staged: &Path) -> PathBuf {
        staged
            .strip_prefix(self.staging.path())
            .map_or_else(|_| staged.to_path_buf(), |relative| self.dir.join(relative))
    }

    /// Move every staged file into the output folder, after checking that none of them would
    /// replace a folder; returns their final paths.
    pub fn commit(self) -> Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        staged_files(self.staging.path(), &mut files)?;
        files.sort();
        let moves: Vec<(PathBuf, PathBuf)> = files
            .into_iter()
            .map(|staged| {
                let target = self.final_path(&staged);
                (staged, target)
            })
            .collect();
        for (_, target) in &moves {
            if target.is_dir() {
                return Err(Error::Write {
                    path: target.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::IsADirectory,
                        "a folder is in the way of this output file",
                    ),
                });
            }
        }
        for (staged, target) in &moves {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|source| Error::Write { path: parent.to_path_buf(), source })?;
            }
            std::fs::rename(staged, target).map_err(|source| Error::Write { path: target.clone(), source })?;
        }
        Ok(moves.into_iter().map(|(_, target)| target).collect())
    }
}

/// Remove staging folders that a killed command left behind (best effort: one still in use by
/// a concurrent command is younger than a minute and kept).
fn remove_stale_staging(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let stale = entry.file_name().to_string_lossy().starts_with(STAGING_PREFIX)
            && entry
                .metadata()
                .and_then(|meta| meta.modified())
                .is_ok_and(|time| time.elapsed().is_ok_and(|age| age.as_secs() > 60));
        if stale {
            // Best effort: a folder that cannot be removed is left for the user to see.
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn staged_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Read { path: dir.to_path_buf(), source })?;
    for entry in entries {
        let path = entry.map_err(|source| Error::Read { path: dir.to_path_buf(), source })?.path();
        if path.is_dir() {
            staged_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Stream the file at `path` into `sink` (a hasher); returns its size.
pub fn copy_into(path: &Path, sink: &mut impl Write) -> Result<u64> {
    let read_error = |source| Error::Read { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(read_error)?;
    std::io::copy(&mut file, sink).map_err(read_error)
}

/// Read a whole file, naming it in the error.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })
}

/// A whole file mapped into memory (no copy); an empty file maps to an empty slice.
pub struct MappedFile {
    map: Option<memmap2::Mmap>,
}

impl std::ops::Deref for MappedFile {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.map.as_deref().unwrap_or_default()
    }
}

/// Map `path` read-only. The harness outputs routerdc reads can be gigabytes; mapping them costs
/// no copy and no anonymous memory.
pub fn map_file(path: &Path) -> Result<MappedFile> {
    let read_error = |source| Error::Read { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(read_error)?;
    if file.metadata().map_err(read_error)?.len() == 0 {
        return Ok(MappedFile { map: None });
    }
    // SAFETY: the map is read-only and lives as long as the `MappedFile`; if another process
    // truncates the file meanwhile, reads past the new end fault, as with any mmap reader.
    // `populate` faults the pages in one go instead of one fault per 4 KiB as the parse walks.
    let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }.map_err(read_error)?;
    Ok(MappedFile { map: Some(map) })
}

pub fn write_parquet(frame: &mut DataFrame, path: &Path) -> Result<()> {
    write_atomic(path, |writer| {
        ParquetWriter::new(writer)
            .with_compression(ParquetCompression::Zstd(None))
            .finish(frame)
            .map(drop)
            .map_err(Error::polars(format!("writing `{}`", path.display())))
    })
}

pub fn write_csv(frame: &mut DataFrame, path: &Path) -> Result<()> {
    write_atomic(path, |writer| {
        CsvWriter::new(writer)
            .include_header(true)
            .finish(frame)
            .map_err(Error::polars(format!("writing `{}`", path.display())))
    })
}

pub fn write_text(text: &str, path: &Path) -> Result<()> {
    write_atomic(path, |writer| {
        writer.write_all(text.as_bytes()).map_err(|source| Error::Write { path: path.to_path_buf(), source })
    })
}

/// How much uncompressed data a parquet file may declare, per byte of file: polars allocates
/// what the metadata declares, so a crafted footer could ask for any amount. routerdc's own
/// files (zstd) declare a few bytes per byte; the bound leaves room for very repetitive data.
const PARQUET_EXPANSION: u64 = 256;

/// A reader for `path` whose metadata has been checked against [`PARQUET_EXPANSION`]; the error
/// message when it cannot be used.
fn parquet_reader(path: &Path) -> Result<std::result::Result<ParquetReader<File>, String>> {
    let file = File::open(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
    let length = file.metadata().map_err(|source| Error::Read { path: path.to_path_buf(), source })?.len();
    let mut reader = ParquetReader::new(file);
    let declared: u64 = match reader.get_metadata() {
        Ok(metadata) => metadata.row_groups.iter().map(|group| group.total_byte_size() as u64).sum(),
        Err(error) => return Ok(Err(error.to_string())),
    };
    let budget = length.saturating_mul(PARQUET_EXPANSION).saturating_add(64 << 20);
    if declared > budget {
        return Ok(Err(format!(
            "its metadata declares {declared} bytes of data in a file of {length} bytes, more than routerdc reads ({PARQUET_EXPANSION} per byte + 64 MiB)"
        )));
    }
    Ok(Ok(reader))
}

/// A parquet file that is not a scored table (a training log, routes, embeddings): an unreadable
/// one is bad input named as `what`, with `hint` saying where such a file comes from.
pub fn read_parquet_as(path: &Path, what: &str, hint: &str) -> Result<DataFrame> {
    let reader = parquet_reader(path)?
        .map_err(|why| Error::bad_file(path, format!("not a readable {what}: {why}"), hint, None))?;
    reader.finish().map_err(|source| Error::bad_file(path, format!("not a readable {what}"), hint, Some(source.into())))
}

pub fn read_parquet(path: &Path) -> Result<DataFrame> {
    let reader = parquet_reader(path)?
        .map_err(|why| Error::table(path, format!("it is not a readable parquet file ({why})")))?;
    reader.finish().map_err(|source| Error::table(path, format!("it is not a readable parquet file ({source})")))
}

/// `<dir>/<name><suffix>` for a name that comes from data (a dataset name), checked first to be
/// one plain file name ([`crate::table::check_name`]): nothing a table holds can make a path
/// outside `dir`.
pub fn named_file(dir: &Path, name: &str, suffix: &str) -> Result<PathBuf> {
    crate::table::check_name(name)
        .map_err(|reason| Error::input(reason, "rename the task in the input (a dataset name becomes a file name)"))?;
    Ok(dir.join(format!("{name}{suffix}")))
}

/// Write every table as `<dir>/<dataset>.parquet`, all or none (through [`Outputs`]); returns
/// the paths, in the tables' order.
pub fn write_tables<'a>(tables: impl IntoIterator<Item = &'a ScoredTable>, dir: &Path) -> Result<Vec<PathBuf>> {
    let outputs = Outputs::new(dir)?;
    let staged = tables.into_iter().map(|table| write_table(table, outputs.dir())).collect::<Result<Vec<_>>>()?;
    let paths = staged.iter().map(|path| outputs.final_path(path)).collect();
    outputs.commit()?;
    Ok(paths)
}

/// Write `table` as `<dir>/<dataset>.parquet` and return that path.
pub fn write_table(table: &ScoredTable, dir: &Path) -> Result<PathBuf> {
    let path = named_file(dir, &table.dataset, ".parquet")?;
    write_parquet(&mut table.to_frame()?, &path)?;
    Ok(path)
}

pub fn read_table(path: &Path) -> Result<LoadedTable> {
    let frame = read_parquet(path)?;
    Ok(LoadedTable { path: path.to_path_buf(), table: ScoredTable::from_frame(&frame, path)? })
}

/// Every `*.parquet` file directly in `dir`, sorted by name.
pub fn table_paths(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Read { path: dir.to_path_buf(), source })?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.map_err(|source| Error::Read { path: dir.to_path_buf(), source })?.path();
        if path.extension().is_some_and(|ext| ext == "parquet") && path.is_file() {
            paths.push(path);
        }
    }
    if paths.is_empty() {
        return Err(Error::NoTables { dir: dir.to_path_buf() });
    }
    paths.sort();
    Ok(paths)
}

/// Read every scored table in `dir`, sorted by file name.
pub fn read_tables(dir: &Path) -> Result<Vec<LoadedTable>> {
    table_paths(dir)?.iter().map(|path| read_table(path)).collect()
}
