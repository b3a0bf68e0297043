//! Fake peers on raw sockets, for faults a real provider or mail server will not produce on
//! demand: one module per peer.

pub mod provider;
pub mod smtp;

/// Aborts a background task when dropped, so a fake server dies with its test.
pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
