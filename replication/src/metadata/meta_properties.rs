//! `meta.properties` and Kafka-style ids.
//!
//! Like Kafka's KRaft storage, each data directory holds a `meta.properties` naming the cluster
//! it belongs to and the node that owns it. The cluster id is generated once, when the file is
//! first written, as Kafka's `Uuid.randomUuid().toString()`: 16 random bytes in unpadded
//! base64url, 22 characters. A directory written by another node id is refused, as Kafka does.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::record::TopicId;
use super::MetadataError;

const FILE_NAME: &str = "meta.properties";
const TEMP_FILE_NAME: &str = "meta.properties.tmp";
/// Version of the file's layout, as Kafka writes it for KRaft.
const VERSION: &str = "1";
/// Longest `meta.properties` read.
const FILE_BYTES_MAX: u64 = 64 * 1024;
/// Draws of a random id before giving up; a v4 UUID repeats with negligible probability.
pub(crate) const RANDOM_ID_ATTEMPTS_MAX: usize = 16;

/// The cluster id and the node that owns the data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterId {
    pub cluster_id: String,
    pub node_id: i32,
}

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A 16-byte id in Kafka's text form: unpadded base64url, 22 characters.
pub fn topic_id_to_string(id: &TopicId) -> String {
    let mut out = String::with_capacity(22);
    for chunk in id.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(BASE64URL[((n >> (18 - 6 * i)) & 0x3f) as usize] as char);
        }
    }
    out
}

/// A random id as Kafka's `Uuid.randomUuid` makes them: never zero, never the reserved
/// metadata topic id (1), never one whose text starts with '-' (a command line would take it
/// for a flag).
pub(crate) fn random_id() -> TopicId {
    let mut id = uuid::Uuid::new_v4().into_bytes();
    for _ in 0..RANDOM_ID_ATTEMPTS_MAX {
        if is_usable_id(&id) {
            break;
        }
        id = uuid::Uuid::new_v4().into_bytes();
    }
    id
}

pub(crate) fn is_usable_id(id: &TopicId) -> bool {
    let value = u128::from_be_bytes(*id);
    value > 1 && !topic_id_to_string(id).starts_with('-')
}

fn sync_dir(dir: &Path) -> Result<(), MetadataError> {
    File::open(dir).and_then(|handle| handle.sync_all()).map_err(|e| MetadataError::io("fsync directory", dir, e))
}

fn parse(path: &Path, text: &str) -> Result<ClusterId, MetadataError> {
    let problem = |problem| MetadataError::MetaProperties { path: path.to_path_buf(), problem };
    let mut version = None;
    let mut cluster_id = None;
    let mut node_id = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let Some((key, value)) = line.split_once('=') else {
            return Err(problem("a line is not key=value"));
        };
        match key.trim() {
            "version" => version = Some(value.trim().to_string()),
            "cluster.id" => cluster_id = Some(value.trim().to_string()),
            "node.id" => node_id = Some(value.trim().parse::<i32>().map_err(|_| problem("node.id is not a number"))?),
            _ => {}
        }
    }
    if version.as_deref() != Some(VERSION) {
        return Err(problem("version is not 1"));
    }
    let cluster_id = cluster_id.filter(|id| !id.is_empty()).ok_or_else(|| problem("no cluster.id"))?;
    let node_id = node_id.ok_or_else(|| problem("no node.id"))?;
    Ok(ClusterId { cluster_id, node_id })
}

fn write(dir: &Path, ids: &ClusterId) -> Result<(), MetadataError> {
    let path = dir.join(FILE_NAME);
    let temp = dir.join(TEMP_FILE_NAME);
    let text = format!(
        "#\n# Written by Fjord; the same keys as Kafka's KRaft meta.properties.\nversion={VERSION}\ncluster.id={}\nnode.id={}\n",
        ids.cluster_id, ids.node_id
    );
    let mut file = File::create(&temp).map_err(|e| MetadataError::io("create", &temp, e))?;
    file.write_all(text.as_bytes()).map_err(|e| MetadataError::io("write", &temp, e))?;
    file.sync_all().map_err(|e| MetadataError::io("fsync", &temp, e))?;
    fs::rename(&temp, &path).map_err(|e| MetadataError::io("rename", &path, e))?;
    sync_dir(dir)
}

/// Reads `<dir>/meta.properties`, or writes a new one with a fresh cluster id. Refuses a file
/// written for another node id.
pub(crate) fn load_or_create(dir: &Path, node_id: i32) -> Result<ClusterId, MetadataError> {
    let path: PathBuf = dir.join(FILE_NAME);
    match fs::metadata(&path) {
        Ok(meta) if meta.len() > FILE_BYTES_MAX => {
            Err(MetadataError::MetaProperties { path, problem: "file is larger than 64 KiB" })
        }
        Ok(_) => {
            let text = fs::read_to_string(&path).map_err(|e| MetadataError::io("read", &path, e))?;
            let ids = parse(&path, &text)?;
            if ids.node_id != node_id {
                return Err(MetadataError::NodeIdMismatch { path, stored: ids.node_id, configured: node_id });
            }
            Ok(ids)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let ids = ClusterId { cluster_id: topic_id_to_string(&random_id()), node_id };
            write(dir, &ids)?;
            tracing::info!(cluster_id = %ids.cluster_id, node_id, "formatted new metadata directory");
            Ok(ids)
        }
        Err(error) => Err(MetadataError::io("stat", &path, error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_as_kafka_does() {
        // Kafka prints Uuid(0, 1), the metadata topic id, as AAAAAAAAAAAAAAAAAAAAAQ.
        let mut metadata_topic = [0u8; 16];
        metadata_topic[15] = 1;
        assert_eq!(topic_id_to_string(&metadata_topic), "AAAAAAAAAAAAAAAAAAAAAQ");
        assert_eq!(topic_id_to_string(&[0xff; 16]), "_____________________w");
        assert!(!is_usable_id(&metadata_topic));
        assert!(!is_usable_id(&[0; 16]));
        let id = random_id();
        assert!(is_usable_id(&id));
        assert_eq!(topic_id_to_string(&id).len(), 22);
    }

    #[test]
    fn cluster_id_is_kept_across_opens_and_node_id_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), 1).unwrap();
        assert_eq!(first.cluster_id.len(), 22);
        let second = load_or_create(dir.path(), 1).unwrap();
        assert_eq!(first, second);
        assert!(matches!(load_or_create(dir.path(), 2), Err(MetadataError::NodeIdMismatch { stored: 1, configured: 2, .. })));
    }

    #[test]
    fn unreadable_properties_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), "version=1\nnode.id=1\n").unwrap();
        assert!(matches!(load_or_create(dir.path(), 1), Err(MetadataError::MetaProperties { .. })));
    }
}
