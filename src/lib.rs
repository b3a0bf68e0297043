//! KYC Desk: a self-hosted console for issuing identity-verification (KYC) links and
//! following each verification to its end.
//!
//! One crate, two builds: `ssr` (the server binary) and `hydrate` (the browser WASM). Code
//! that must never reach the browser lives in [`server`], compiled only with `ssr`.
#![recursion_limit = "256"]

/// `Display` and `TryFrom<String>` for a closed set with `as_str` and `parse`: the text is
/// the stored spelling, and reading a row whose text names no member is a decoding error,
/// not a guess.
macro_rules! stored_spelling {
    ($set:ty, $what:literal) => {
        impl std::fmt::Display for $set {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl TryFrom<String> for $set {
            type Error = String;

            fn try_from(text: String) -> Result<Self, Self::Error> {
                Self::parse(&text).ok_or_else(|| format!(concat!("unknown ", $what, " {:?}"), text))
            }
        }
    };
}

pub mod access;
pub mod api;
pub mod app;
pub mod channel;
pub mod credential_kinds;
pub mod markup;
pub mod pages;
pub mod provider;
pub mod types;
pub mod validation;

#[cfg(feature = "ssr")]
pub mod server;

/// Browser entry point: attaches the WASM to the server-rendered page.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // Lazily loaded routes (see `app`) hydrate once their part of the bundle has arrived.
    leptos::mount::hydrate_lazy(app::App);
}
