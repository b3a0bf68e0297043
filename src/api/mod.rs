//! Server functions: the only door from the browser to the server. Each is thin: it names its
//! endpoint, passes the gate (`server::auth::guard::require`, which reads the function's rule
//! from [`crate::access::SERVER_FN_ACCESS`] by that name), validates its input and calls a
//! service. Endpoints are fixed names under `/api/` so tests and logs can refer to them.
//!
//! Over HTTP the router's server-function door applies the same table before a function's
//! arguments are read; pages also call the functions in-process while rendering, and then the
//! function's own pass through the gate is the check.

pub mod audit;
pub mod auth;
pub mod credentials;
pub mod factors;
pub mod links;
pub mod notice;
pub mod passkeys;
pub mod users;
