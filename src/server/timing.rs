//! A stand-in for the old phase-timing hook, kept only while `web.rs` still calls it: link
//! creation's phases are now `tracing` spans (`links::create::phase_span`) that `kyc-bench`
//! times. Delete this file once `web.rs` opens that span instead.

use std::time::Instant;

/// Does nothing; see the module summary.
#[inline]
pub fn record(phase: &'static str, started: Instant) {
    let _ = (phase, started);
}
