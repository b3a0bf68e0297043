//! `kyc-desk credentials …`: provider credentials from the command line, one module per action.

pub mod import;
pub mod list;
pub mod test;
