//! arcly-blocking
