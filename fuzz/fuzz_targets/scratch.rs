//! Scratch directories for the fuzz targets that write files (segment_recovery, txn_index):
//! `fuzz/target/scratch/<target>/<pid>`, parent overridable with FJORD_FUZZ_SCRATCH.

use std::path::{Path, PathBuf};

/// A directory of this process under the scratch parent; directories of dead processes go.
pub fn scratch_dir(target: &str) -> PathBuf {
    let parent = std::env::var_os("FJORD_FUZZ_SCRATCH")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/scratch"))
        .join(target);
    if let Ok(entries) = std::fs::read_dir(&parent) {
        for entry in entries.flatten() {
            let pid = entry.file_name().to_string_lossy().parse::<u32>().ok();
            if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = parent.join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}
