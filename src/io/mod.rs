//! File I/O at the edges of the stages. Every write is atomic: the bytes go to a temporary file
//! in the destination's folder, which is renamed over the destination only once complete, so a
//! failed or interrupted command never leaves a half-written file behind.

pub mod json;
pub mod pickle;
pub mod routerdc_json;

use std::fs::File;
use std::io::{BufWriter, Write};
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
    let temp = tempfile::Builder::new().prefix(".routerdc-").suffix(".tmp").tempfile_in(dir).map_err(write_error)?;
    {
        let mut writer = BufWriter::new(temp.as_file());
        fill(&mut writer)?;
        writer.flush().map_err(write_error)?;
    }
    temp.as_file().sync_all().map_err(write_error)?;
    temp.persist(path).map_err(|error| write_error(error.error))?;
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

pub fn read_parquet(path: &Path) -> Result<DataFrame> {
    let file = File::open(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
    ParquetReader::new(file)
        .finish()
        .map_err(|source| Error::table(path, format!("it is not a readable parquet file ({source})")))
}

/// Write `table` as `<dir>/<dataset>.parquet` and return that path.
pub fn write_table(table: &ScoredTable, dir: &Path) -> Result<PathBuf> {
    let path = dir.join(format!("{}.parquet", table.dataset));
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
