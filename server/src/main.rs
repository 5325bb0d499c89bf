//! arcly-server
fn main() {}
