//! arcly-tokio
