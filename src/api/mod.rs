//! Server functions: the only door from the browser to the server. Every function checks the
//! session and the role itself (see `server::auth::guard`), validates its input and calls a
//! service. Endpoints are fixed names under `/api/` so tests and logs can refer to them.
//!
//! [`SERVER_FN_ACCESS`] says who may call each of them. The HTTP layer answers 401/403 from it
//! before a function's arguments are read, and each function's own guard must agree with it
//! (a guard that does not is refused as an internal error), so the table is the rule.

pub mod audit;
pub mod auth;
pub mod credentials;
pub mod links;
pub mod users;

use crate::types::Role;

/// Who may call a server function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not: sign-in, sign-out, first-run setup, "who am I".
    Public,
    /// Any signed-in user, even one who must still replace an initial password.
    AnySignedIn,
    /// Signed-in users of these roles who have replaced any initial password.
    Roles(&'static [Role]),
}

const ADMINS: &[Role] = &[Role::Admin];
const ACTORS: &[Role] = &[Role::Operator, Role::Admin];
const READERS: &[Role] = &[Role::Operator, Role::Admin, Role::Auditor];
const AUDIT_READERS: &[Role] = &[Role::Auditor, Role::Admin];

/// Every server function's endpoint (the part after `/api/`) and who may call it. A function
/// missing from this table cannot be called over HTTP at all.
pub const SERVER_FN_ACCESS: &[(&str, Access)] = &[
    // auth.rs
    ("whoami", Access::Public),
    ("login", Access::Public),
    ("logout", Access::Public),
    ("setup_state", Access::Public),
    ("create_first_admin", Access::Public),
    ("change_password", Access::AnySignedIn),
    // audit.rs
    ("list_audit", Access::Roles(AUDIT_READERS)),
    ("verify_audit", Access::Roles(AUDIT_READERS)),
    // credentials.rs
    ("list_credentials", Access::Roles(ADMINS)),
    ("save_credential", Access::Roles(ADMINS)),
    ("test_credential", Access::Roles(ADMINS)),
    // links.rs
    ("link_options", Access::Roles(ACTORS)),
    ("create_link", Access::Roles(ACTORS)),
    ("session_detail", Access::Roles(READERS)),
    ("list_sessions", Access::Roles(READERS)),
    ("send_link", Access::Roles(ACTORS)),
    ("cancel_link", Access::Roles(ACTORS)),
    ("regenerate_link", Access::Roles(ACTORS)),
    ("dashboard_stats", Access::Roles(READERS)),
    ("email_template", Access::Roles(ADMINS)),
    ("save_email_template", Access::Roles(ADMINS)),
    // users.rs
    ("list_users", Access::Roles(ADMINS)),
    ("create_user", Access::Roles(ADMINS)),
    ("set_user_role", Access::Roles(ADMINS)),
    ("set_user_disabled", Access::Roles(ADMINS)),
    ("reset_user_password", Access::Roles(ADMINS)),
];

/// The access rule of the server function at `endpoint` (without `/api/`), if it has one.
pub fn access_of(endpoint: &str) -> Option<Access> {
    SERVER_FN_ACCESS
        .iter()
        .find(|(name, _)| *name == endpoint)
        .map(|(_, access)| *access)
}

impl Access {
    /// Whether this rule lets exactly the roles in `roles` call (order does not matter).
    pub fn is_roles(self, roles: &[Role]) -> bool {
        match self {
            Access::Roles(allowed) => {
                allowed.iter().all(|r| roles.contains(r))
                    && roles.iter().all(|r| allowed.contains(r))
            }
            _ => false,
        }
    }
}
