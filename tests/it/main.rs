//! KYC Desk's integration tests, in one binary so the crate is linked once (two cores,
//! limited disk on CI). Each module exercises one area against SQLite and PostgreSQL.
#![cfg(feature = "ssr")]

#[allow(dead_code)]
#[macro_use]
mod common;

mod abuse;
mod assets;
mod audit;
mod audit_integrity;
mod audit_scan;
mod auth;
mod bounded_waits;
mod cli;
mod connection_checks;
mod credentials;
mod customer_link;
mod durability;
mod faults;
mod links;
mod page_stress;
mod passkeys;
mod providers;
mod reads_recorded_once;
mod returns;
mod sandbox;
mod scaleout;
mod second_factor;
mod secret_destinations;
mod single_sign_on;
mod upgrade;
