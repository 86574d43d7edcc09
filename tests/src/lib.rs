//! End-to-end test support: see tests/*.rs and tests/e2e/ (Python clients).
