//! arcly-bench
