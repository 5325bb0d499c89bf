//! Codec bitstream helpers (H.264, H.265, AAC, Opus): parameter-set parsing,
//! configuration records and format conversions used by the containers and
//! protocol mappings.
