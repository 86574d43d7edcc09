//! `fjord tune`: host checks for running a streaming broker (comes with its own issue).
