//! Every file-system change the engine makes besides its DMA segment writes (those are in
//! `rt::DmaFile`): one place that says what is durable when, and the seam the simulated disk
//! ([`crate::sim_disk`]) watches to decide what a crash keeps.
//!
//! - [`write_durably`]: temporary file, fdatasync, rename, fsync of the directory (fjall's
//!   `rewrite_atomic`): a crash leaves the old contents or the new, never a mix.
//! - [`rename_durably`], [`remove_durably`]: a set of renames (or unlinks) in one directory,
//!   made durable together by one fsync of the directory (compaction's commit, index files).
//! - [`rename`], [`remove_file`]: not durable until [`sync_dir`] of the directory.
//! - [`append_durably`]: appends and syncs the data (and the name, when it creates the file).
//! - [`write`]: replaces contents without syncing (hints whose loss or tear recovery tolerates).
//!
//! Everything here blocks its thread, fsyncs above all (one takes 0.1-10 ms, a full journal
//! much longer). A shard thread serves produce and fetch for all its partitions, so what runs
//! while the shard serves goes through [`off_shard`] (the shard's blocking pool); only opening at
//! start (before the shard serves) and tests call these directly. The simulated disk's state is
//! process-wide, so its hooks see the blocking pool's operations like the shard's.

use std::io::{self, Write};
use std::path::Path;

use crate::sim_disk::{self, Op};

/// Runs blocking file-system work (the functions of this module) on the shard's blocking pool
/// and waits for it without blocking the shard. The caller awaits it before the step that must
/// follow it, so the durability order is the order of the awaits.
///
/// The functions here open at most two descriptors at once (a file and its directory); room for
/// them is made in the shard's descriptor budget first, since on the blocking thread
/// `open_retrying` has no idle descriptors of its own to close.
pub async fn off_shard<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> R {
    crate::files::make_room_for_transient(DESCRIPTORS_PER_OPERATION_MAX);
    crate::rt::spawn_blocking(work).await
}

/// Descriptors one function of this module holds open at once: a file and its directory.
const DESCRIPTORS_PER_OPERATION_MAX: usize = 2;

/// Writes `contents` to a temporary file, syncs it and renames it over `path`, then syncs the
/// directory, so a crash leaves either the old or the new contents and the name is durable.
pub fn write_durably(path: &Path, contents: &[u8]) -> io::Result<()> {
    let temporary = temporary_path(path);
    write_synced(&temporary, contents)?;
    rename_durably(&[(&temporary, path)], parent_dir(path))
}

/// `<name>.tmp`: the whole name stays, so two files that differ only in extension (a segment's
/// index and a snapshot at the same offset) never share a temporary file.
fn temporary_path(path: &Path) -> std::path::PathBuf {
    let mut temporary_name = path.file_name().unwrap_or_default().to_os_string();
    temporary_name.push(".tmp");
    path.with_file_name(temporary_name)
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Renames each `(from, to)` in order (replacing `to`), then syncs `dir`, which holds every one
/// of them: after a crash each rename may or may not have happened until the sync returns, and
/// all have after it.
pub fn rename_durably(renames: &[(&Path, &Path)], dir: &Path) -> io::Result<()> {
    for (from, to) in renames {
        debug_assert_eq!(parent_dir(to), dir, "a rename outside the directory synced");
        rename(from, to)?;
    }
    sync_dir(dir)
}

/// Unlinks each of `paths` that exists, then syncs `dir`, which holds every one of them.
pub fn remove_durably(paths: &[&Path], dir: &Path) -> io::Result<()> {
    for path in paths {
        debug_assert_eq!(parent_dir(path), dir, "a removal outside the directory synced");
        match remove_file(path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
    }
    sync_dir(dir)
}

/// Creates or replaces `path` with `contents` and syncs its data (its name is not synced).
pub fn write_synced(path: &Path, contents: &[u8]) -> io::Result<()> {
    sim_disk::before(path, Op::Name)?;
    let mut file = open_retrying(|| std::fs::File::create(path))?;
    sim_disk::opened(path);
    sim_disk::before(path, Op::Write)?;
    file.write_all(contents)?;
    sim_disk::wrote(path, 0, contents.len() as u64);
    sim_disk::before(path, Op::Sync)?;
    file.sync_data()?;
    sim_disk::synced(path);
    Ok(())
}

/// Appends `contents` to `path` (creating it) and syncs the data; a new file's directory is
/// synced too, so the appended bytes cannot lose their name.
pub fn append_durably(path: &Path, contents: &[u8]) -> io::Result<()> {
    let created = !path.exists();
    if created {
        sim_disk::before(path, Op::Name)?;
    }
    let mut file = open_retrying(|| std::fs::OpenOptions::new().create(true).append(true).open(path))?;
    sim_disk::opened(path);
    let position = file.metadata()?.len();
    sim_disk::before(path, Op::Write)?;
    file.write_all(contents)?;
    sim_disk::wrote(path, position, contents.len() as u64);
    sim_disk::before(path, Op::Sync)?;
    file.sync_data()?;
    sim_disk::synced(path);
    if created {
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Replaces `path`'s contents without syncing anything.
pub fn write(path: &Path, contents: &[u8]) -> io::Result<()> {
    sim_disk::before(path, Op::Write)?;
    std::fs::write(path, contents)?;
    sim_disk::opened(path);
    sim_disk::wrote(path, 0, contents.len() as u64);
    Ok(())
}

/// Renames `from` to `to` (replacing it); durable after [`sync_dir`].
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    sim_disk::before(to, Op::Name)?;
    std::fs::rename(from, to)?;
    sim_disk::renamed(from, to);
    Ok(())
}

/// Unlinks `path`; durable after [`sync_dir`].
pub fn remove_file(path: &Path) -> io::Result<()> {
    sim_disk::before(path, Op::Name)?;
    std::fs::remove_file(path)?;
    sim_disk::removed(path);
    Ok(())
}

/// Removes a directory tree (a deleted partition).
pub fn remove_dir_all(dir: &Path) -> io::Result<()> {
    sim_disk::before(dir, Op::Name)?;
    std::fs::remove_dir_all(dir)?;
    sim_disk::removed_tree(dir);
    Ok(())
}

/// Makes the renames, creations and removals in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    sim_disk::before(dir, Op::Sync)?;
    open_retrying(|| std::fs::File::open(dir))?.sync_all()?;
    sim_disk::synced_dir(dir);
    Ok(())
}

/// A file written only at its end (the metadata log's segments), whose writes the simulated disk
/// sees like every other.
#[derive(Debug)]
pub struct AppendFile {
    file: std::fs::File,
    path: std::path::PathBuf,
    length: u64,
}

impl AppendFile {
    /// Creates `path`, which must not exist; its name is durable after [`sync_dir`].
    pub fn create_new(path: &Path) -> io::Result<AppendFile> {
        sim_disk::before(path, Op::Name)?;
        let file = open_retrying(|| std::fs::OpenOptions::new().append(true).create_new(true).open(path))?;
        sim_disk::opened(path);
        Ok(AppendFile { file, path: path.to_path_buf(), length: 0 })
    }

    /// Opens an existing file to append to it.
    pub fn open(path: &Path) -> io::Result<AppendFile> {
        let file = open_retrying(|| std::fs::OpenOptions::new().append(true).open(path))?;
        let length = file.metadata()?.len();
        sim_disk::opened(path);
        Ok(AppendFile { file, path: path.to_path_buf(), length })
    }

    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        sim_disk::before(&self.path, Op::Write)?;
        self.file.write_all(bytes)?;
        sim_disk::wrote(&self.path, self.length, bytes.len() as u64);
        self.length += bytes.len() as u64;
        Ok(())
    }

    pub fn sync_data(&self) -> io::Result<()> {
        sim_disk::before(&self.path, Op::Sync)?;
        self.file.sync_data()?;
        sim_disk::synced(&self.path);
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Cuts `path` to `length` bytes and syncs it.
pub fn truncate_synced(path: &Path, length: u64) -> io::Result<()> {
    sim_disk::before(path, Op::Write)?;
    let file = open_retrying(|| std::fs::OpenOptions::new().write(true).open(path))?;
    file.set_len(length)?;
    sim_disk::before(path, Op::Sync)?;
    file.sync_all()?;
    sim_disk::synced(path);
    Ok(())
}

/// Opens with `open`; out of descriptors (EMFILE/ENFILE), closes the shard's idle segment
/// descriptors and tries once more, so a full descriptor table costs a reopen later instead of
/// failing a write that would poison its partition.
fn open_retrying(open: impl Fn() -> io::Result<std::fs::File>) -> io::Result<std::fs::File> {
    match open() {
        Err(error) if crate::files::is_exhausted(&error) => {
            crate::files::close_all_idle();
            open()
        }
        opened => opened,
    }
}
