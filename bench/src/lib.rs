//! fjord-bench: the load generator comes with the benchmark issue.
