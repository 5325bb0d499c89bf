//! Containers: MPEG-TS mux/demux (ISO/IEC 13818-1) and fMP4/CMAF
//! (ISO/IEC 14496-12, ISO/IEC 14496-15, ISO/IEC 23000-19).
//!
//! Everything here is sans-IO: frames in, bytes out (and back). Every buffer
//! is bounded by a documented constant and bad input is an error value or a
//! counted, recovered event — never a panic.

pub mod fmp4;
pub(crate) mod fmp4_track;
pub mod hls;
pub mod record;
pub(crate) mod start_gate;
pub mod ts;
