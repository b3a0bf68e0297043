//! Server functions: the only door from the browser to the server. Every function checks the
//! session and the role itself (see `server::auth::guard`), validates its input and calls a
//! service. Endpoints are fixed names under `/api/` so tests and logs can refer to them.

pub mod audit;
pub mod auth;
pub mod credentials;
pub mod links;
pub mod users;
