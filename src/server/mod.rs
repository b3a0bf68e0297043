//! Server-only code: nothing in here is compiled into the browser bundle.

pub mod audit;
pub mod auth;
pub mod config;
pub mod credentials;
pub mod csv;
pub mod customer;
pub mod db;
pub mod destination;
pub mod fresh_database;
pub mod links;
pub mod notify;
pub mod providers;
pub mod sandbox;
pub mod serve_process;
pub mod startup;
pub mod state;
pub mod timing;
pub mod vault;
pub mod web;
