//! arcly-examples
