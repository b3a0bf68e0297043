//! KYC Desk: a self-hosted console for issuing identity-verification (KYC) links and
//! following each verification to its end.
//!
//! One crate, two builds: `ssr` (the server binary) and `hydrate` (the browser WASM). Code
//! that must never reach the browser lives in [`server`], compiled only with `ssr`.
#![recursion_limit = "256"]

pub mod access;
pub mod api;
pub mod app;
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
    leptos::mount::hydrate_body(app::App);
}
