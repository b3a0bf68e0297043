//! The phases of a request that `kyc-bench` times: each runs inside a `tracing` span named
//! [`PHASE_SPAN`] whose `phase` field names it ("1 door: session and user", "4 provider call",
//! …). Debug spans: with the usual log levels nothing is recorded; the bench installs a layer
//! that times them. Product code only names its phases; it never measures them itself.

/// The name of the spans [`phase_span`] opens.
pub const PHASE_SPAN: &str = "link_phase";

/// The span one phase runs in (`phase` names it, e.g. `"4 provider call"`).
pub fn phase_span(phase: &'static str) -> tracing::Span {
    tracing::debug_span!(PHASE_SPAN, phase)
}
