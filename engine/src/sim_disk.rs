//! A simulated disk for crash and fault tests (TigerBeetle-style): it watches every change the
//! engine makes to files under a directory and keeps the POSIX minimum of what a power cut would
//! leave — file contents as of their last fdatasync, directory entries as of their directory's
//! last fsync — so a test can crash the engine there, rewrite the real directory to that state
//! (dropping or tearing whatever was not synced) and reopen. It can also fail a chosen write or
//! fsync (EIO, ENOSPC), or every operation after the n-th, to enumerate crash points.
//!
//! ```text
//!   engine ──▶ rt::DmaFile / crate::fs ──▶ real file system (what the running engine sees)
//!                    │ before(op): fail? (fault, frozen)      after: record
//!                    ▼
//!              SimDisk: names (volatile ▸ durable at sync_dir), inode contents (durable at sync),
//!                       unsynced DMA writes (for tearing)          crash(): real fs := durable
//! ```
//!
//! Inert unless a test calls [`SimDisk::attach`]: the engine's only cost is one relaxed atomic
//! load per file operation. Paths outside an attached root are not watched. Directories are
//! taken as durable when created or removed (the model covers files and their names).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Bytes a torn write keeps or loses together (a device sector).
pub const SECTOR_BYTES: u64 = 512;

static ANY_ATTACHED: AtomicBool = AtomicBool::new(false);
static DISKS: Mutex<Vec<Arc<SimDisk>>> = Mutex::new(Vec::new());

/// What the engine is about to do to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Data or size: a DMA write, zeros written ahead, a truncation, a reservation.
    Write,
    /// fdatasync / sync_data of a file, or fsync of a directory.
    Sync,
    /// A name: create, rename, remove.
    Name,
}

/// A fault the disk injects: the `skip`+1-th matching operation fails with `errno`, and the
/// `count - 1` after it too (`usize::MAX`: every one from then on).
#[derive(Debug, Clone)]
pub struct Fault {
    pub op: Op,
    /// Only operations on paths whose file name contains this (empty: any).
    pub name_contains: String,
    pub errno: i32,
    pub skip: usize,
    pub count: usize,
}

#[derive(Default)]
struct State {
    next_inode: u64,
    /// The names the running engine sees (mirrors the real directory).
    names: BTreeMap<PathBuf, u64>,
    /// The names a crash keeps.
    durable_names: BTreeMap<PathBuf, u64>,
    /// Each inode's contents as of its last sync.
    durable: HashMap<u64, Vec<u8>>,
    /// DMA writes since each inode's last sync: (position, length).
    unsynced: HashMap<u64, Vec<(u64, u64)>>,
    faults: Vec<Fault>,
    /// Mutating operations so far, and after how many everything fails.
    operations: usize,
    freeze_after: Option<usize>,
    /// Operations that failed (injected or frozen), for tests to assert they happened.
    failed: usize,
}

/// One watched directory tree. Shared by every shard and blocking thread of the process.
pub struct SimDisk {
    root: PathBuf,
    state: Mutex<State>,
}

/// How a crash treats writes that were not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unsynced write is lost.
    DropUnsynced,
    /// Each unsynced write keeps a prefix of its sectors (chosen from `seed`), the rest is lost.
    TearUnsynced { seed: u64 },
}

impl SimDisk {
    /// Starts watching `root` (created if missing): everything already under it is durable.
    pub fn attach(root: &Path) -> io::Result<Arc<SimDisk>> {
        std::fs::create_dir_all(root)?;
        let root = root.canonicalize()?;
        let disk = Arc::new(SimDisk { root: root.clone(), state: Mutex::new(State::default()) });
        {
            let mut state = disk.lock();
            for path in files_under(&root)? {
                let inode = state.new_inode();
                let contents = std::fs::read(&path)?;
                state.durable.insert(inode, contents);
                state.names.insert(path.clone(), inode);
                state.durable_names.insert(path, inode);
            }
        }
        lock_disks().push(disk.clone());
        ANY_ATTACHED.store(true, Ordering::Release);
        Ok(disk)
    }

    /// Stops watching (the real files stay as they are).
    pub fn detach(self: &Arc<Self>) {
        let mut disks = lock_disks();
        disks.retain(|disk| !Arc::ptr_eq(disk, self));
        ANY_ATTACHED.store(!disks.is_empty(), Ordering::Release);
    }

    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Every mutating operation after the next `operations` fails with EIO and changes nothing:
    /// the real files then hold the state of that crash point.
    pub fn freeze_after(&self, operations: usize) {
        let mut state = self.lock();
        state.freeze_after = Some(state.operations + operations);
    }

    /// Mutating operations recorded so far (to size a crash-point enumeration).
    pub fn operations(&self) -> usize {
        self.lock().operations
    }

    /// Operations that failed by injection or freeze.
    pub fn failed(&self) -> usize {
        self.lock().failed
    }

    /// Whether any write since the last sync of any file is still unsynced.
    pub fn has_unsynced_writes(&self) -> bool {
        self.lock().unsynced.values().any(|writes| !writes.is_empty())
    }

    /// The power cut: the real tree becomes what the disk guarantees (files and names as of their
    /// last sync; unsynced writes dropped or torn), and the disk keeps watching from there with
    /// faults and freeze cleared. Call it only once the engine's shards have stopped.
    pub fn crash(&self, mode: CrashMode) -> io::Result<()> {
        let mut state = self.lock();
        let mut random = match mode {
            CrashMode::DropUnsynced => None,
            CrashMode::TearUnsynced { seed } => Some(seed.max(1)),
        };
        let mut images: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
        for (path, inode) in &state.durable_names {
            let mut image = state.durable.get(inode).cloned().unwrap_or_default();
            if let Some(seed) = random.as_mut() {
                if let Some(current) = state.names.iter().find(|(_, live)| *live == inode).map(|(path, _)| path) {
                    let live = std::fs::read(current).unwrap_or_default();
                    for (position, length) in state.unsynced.get(inode).into_iter().flatten() {
                        let sectors = length.div_ceil(SECTOR_BYTES);
                        let kept = next_random(seed) % (sectors + 1);
                        let end = (position + kept * SECTOR_BYTES).min(position + length).min(live.len() as u64);
                        if end > *position {
                            if image.len() < end as usize {
                                image.resize(end as usize, 0);
                            }
                            image[*position as usize..end as usize].copy_from_slice(&live[*position as usize..end as usize]);
                        }
                    }
                }
            }
            images.insert(path.clone(), image);
        }
        for path in files_under(&self.root)? {
            if !images.contains_key(&path) {
                std::fs::remove_file(&path)?;
            }
        }
        for (path, image) in &images {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, image)?;
        }
        state.names = state.durable_names.clone();
        for (path, inode) in state.durable_names.clone() {
            if let Some(image) = images.get(&path) {
                state.durable.insert(inode, image.clone());
            }
        }
        state.unsynced.clear();
        state.faults.clear();
        state.freeze_after = None;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn new_inode(&mut self) -> u64 {
        self.next_inode += 1;
        self.next_inode
    }

    /// Counts a mutating operation and says whether it fails.
    fn admit(&mut self, op: Op, path: &Path) -> io::Result<()> {
        self.operations += 1;
        if self.freeze_after.is_some_and(|after| self.operations > after) {
            self.failed += 1;
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
        for fault in &mut self.faults {
            if fault.op != op || !name.contains(fault.name_contains.as_str()) || fault.count == 0 {
                continue;
            }
            if fault.skip > 0 {
                fault.skip -= 1;
                continue;
            }
            fault.count = fault.count.saturating_sub(1);
            self.failed += 1;
            return Err(io::Error::from_raw_os_error(fault.errno));
        }
        Ok(())
    }

    fn inode_of(&mut self, path: &Path) -> u64 {
        match self.names.get(path) {
            Some(inode) => *inode,
            None => {
                let inode = self.new_inode();
                self.names.insert(path.to_path_buf(), inode);
                inode
            }
        }
    }
}

fn lock_disks() -> MutexGuard<'static, Vec<Arc<SimDisk>>> {
    DISKS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The disk watching `path`, if any (the engine's hook; a relaxed load when none is attached).
pub(crate) fn watching(path: &Path) -> Option<(Arc<SimDisk>, PathBuf)> {
    if !ANY_ATTACHED.load(Ordering::Acquire) {
        return None;
    }
    let absolute = absolute(path)?;
    lock_disks().iter().find(|disk| absolute.starts_with(&disk.root)).map(|disk| (disk.clone(), absolute))
}

/// An absolute path whose parent is canonical (the file itself may not exist yet).
fn absolute(path: &Path) -> Option<PathBuf> {
    let parent = path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Some(parent.canonicalize().ok()?.join(path.file_name()?))
}

/// Checks (and counts) an operation about to be made on a watched path: Err if it must fail.
pub(crate) fn before(path: &Path, op: Op) -> io::Result<()> {
    match watching(path) {
        Some((disk, absolute)) => disk.lock().admit(op, &absolute),
        None => Ok(()),
    }
}

/// A file was opened, creating it if it did not exist (its name is not durable yet).
pub(crate) fn opened(path: &Path) {
    if let Some((disk, absolute)) = watching(path) {
        disk.lock().inode_of(&absolute);
    }
}

/// `length` bytes were written at `position` and are not durable yet.
pub(crate) fn wrote(path: &Path, position: u64, length: u64) {
    if let Some((disk, absolute)) = watching(path) {
        let mut state = disk.lock();
        let inode = state.inode_of(&absolute);
        state.unsynced.entry(inode).or_default().push((position, length));
    }
}

/// The file's contents (data and size) are durable as they are now.
pub(crate) fn synced(path: &Path) {
    if let Some((disk, absolute)) = watching(path) {
        let contents = std::fs::read(&absolute).unwrap_or_default();
        let mut state = disk.lock();
        let inode = state.inode_of(&absolute);
        state.durable.insert(inode, contents);
        state.unsynced.remove(&inode);
    }
}

pub(crate) fn renamed(from: &Path, to: &Path) {
    if let (Some((disk, from)), Some((_, to))) = (watching(from), watching(to)) {
        let mut state = disk.lock();
        if let Some(inode) = state.names.remove(&from) {
            state.names.insert(to, inode);
        }
    }
}

pub(crate) fn removed(path: &Path) {
    if let Some((disk, absolute)) = watching(path) {
        disk.lock().names.remove(&absolute);
    }
}

/// A directory tree was removed: taken as durable at once (see the module doc).
pub(crate) fn removed_tree(dir: &Path) {
    if let Some((disk, absolute)) = watching(dir) {
        let mut state = disk.lock();
        state.names.retain(|path, _| !path.starts_with(&absolute));
        state.durable_names.retain(|path, _| !path.starts_with(&absolute));
    }
}

/// The names in `dir` are durable as they are now.
pub(crate) fn synced_dir(dir: &Path) {
    let Some(dir) = dir.canonicalize().ok() else { return };
    if !ANY_ATTACHED.load(Ordering::Acquire) {
        return;
    }
    let Some(disk) = lock_disks().iter().find(|disk| dir.starts_with(&disk.root)).cloned() else { return };
    let mut state = disk.lock();
    let in_dir = |path: &PathBuf| path.parent() == Some(dir.as_path());
    state.durable_names.retain(|path, _| !in_dir(path));
    let live: Vec<(PathBuf, u64)> = state.names.iter().filter(|(path, _)| in_dir(path)).map(|(p, i)| (p.clone(), *i)).collect();
    state.durable_names.extend(live);
}

fn files_under(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    Ok(files)
}

/// xorshift64: enough to choose tears reproducibly from a seed.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
