//! Phase timings of link creation, for `kyc-bench links` to show where a creation's time goes.
//! Collected only in benchmark builds (the `bench` feature), and there only once the benchmark
//! asks for it (a `kyc-desk serve` built with that feature for the soak must not collect
//! timings for hours); elsewhere `record` does nothing.

use std::time::Instant;

#[cfg(feature = "bench")]
static RECORDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cfg(feature = "bench")]
static PHASES: std::sync::Mutex<Vec<(&'static str, std::time::Duration)>> =
    std::sync::Mutex::new(Vec::new());

/// Records that `phase` took from `started` until now.
#[inline]
pub fn record(phase: &'static str, started: Instant) {
    #[cfg(feature = "bench")]
    if RECORDING.load(std::sync::atomic::Ordering::Relaxed)
        && let Ok(mut phases) = PHASES.lock()
    {
        phases.push((phase, started.elapsed()));
    }
    #[cfg(not(feature = "bench"))]
    let _ = (phase, started);
}

/// Starts recording timings in this process.
#[cfg(feature = "bench")]
pub fn start_recording() {
    RECORDING.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Takes every timing recorded so far, by phase.
#[cfg(feature = "bench")]
pub fn take() -> std::collections::BTreeMap<&'static str, Vec<std::time::Duration>> {
    let mut by_phase = std::collections::BTreeMap::<_, Vec<_>>::new();
    if let Ok(mut phases) = PHASES.lock() {
        for (phase, took) in phases.drain(..) {
            by_phase.entry(phase).or_default().push(took);
        }
    }
    by_phase
}
