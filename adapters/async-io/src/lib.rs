//! arcly-async-io
