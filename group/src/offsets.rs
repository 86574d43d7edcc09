//! Committed offsets of one group.
