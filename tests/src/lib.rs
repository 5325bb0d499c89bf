//! arcly-tests
