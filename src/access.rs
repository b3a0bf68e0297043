//! Who may do what: the one access table of KYC Desk. Every door reads it — the console's
//! pages (and their navigation), the server functions, the file routes (CSV exports, QR
//! images) — and the one gate (`server::auth::guard::admit`) applies it, so no second role list
//! exists to drift. Shared by both builds: the browser uses the page areas for its navigation
//! and the "no access" panel; the server uses all of it.

use crate::types::Role;
use std::borrow::Cow;

/// Who may pass a door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not: sign-in, sign-out, first-run setup, "who am I".
    Public,
    /// Any signed-in user, even one who must still replace an initial password.
    AnySignedIn,
    /// Signed-in users of these roles who have replaced any initial password.
    Roles(&'static [Role]),
    /// As [`Access::Roles`], and only within the step-up window (`KYC_DESK_STEP_UP_WINDOW`,
    /// 5 minutes) after the user confirmed it is them again — with a fresh code from their
    /// authenticator, or their password when they have no second factor. The doors where
    /// damage is done.
    StepUp(&'static [Role]),
    /// Only a half-signed-in user: the password was right, the second factor is still to be
    /// given. Such a user passes no other door (public doors see them as signed out).
    SecondStep,
}

impl Access {
    /// The roles of a role rule (with or without step-up).
    pub fn roles(self) -> Option<&'static [Role]> {
        match self {
            Access::Roles(roles) | Access::StepUp(roles) => Some(roles),
            _ => None,
        }
    }

    /// Whether this rule lets exactly the roles in `roles` pass (order does not matter).
    pub fn is_roles(self, roles: &[Role]) -> bool {
        match self {
            Access::Roles(allowed) | Access::StepUp(allowed) => {
                allowed.iter().all(|r| roles.contains(r))
                    && roles.iter().all(|r| allowed.contains(r))
            }
            _ => false,
        }
    }

    /// Whether a signed-in user of `role` (with no initial password left to replace) passes.
    pub fn admits(self, role: Role) -> bool {
        match self {
            Access::Public | Access::AnySignedIn => true,
            Access::Roles(allowed) | Access::StepUp(allowed) => allowed.contains(&role),
            Access::SecondStep => false,
        }
    }
}

/// Admins only.
pub const ADMINS: &[Role] = &[Role::Admin];
/// Those who create, share and follow links.
pub const ACTORS: &[Role] = &[Role::Operator, Role::Admin];
/// Those who read sessions.
pub const READERS: &[Role] = &[Role::Operator, Role::Admin, Role::Auditor];
/// Those who read the audit log.
pub const AUDIT_READERS: &[Role] = &[Role::Auditor, Role::Admin];
/// Every role.
pub const EVERYONE: &[Role] = READERS;

/// One area of the console, as the navigation and the page door know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Area {
    /// Path prefix of the area's pages.
    pub path: &'static str,
    /// Navigation label.
    pub label: &'static str,
    /// Roles that may open it.
    pub roles: &'static [Role],
    /// Whether the navigation lists it.
    pub in_nav: bool,
}

/// The areas of the console. Navigation, the page door and the pages' own "no access" panel
/// all read this one table, so they cannot disagree.
pub const AREAS: &[Area] = &[
    Area {
        path: "/links",
        label: "New link",
        roles: ACTORS,
        in_nav: true,
    },
    Area {
        path: "/sessions",
        label: "Sessions",
        roles: READERS,
        in_nav: true,
    },
    Area {
        path: "/users",
        label: "Users",
        roles: ADMINS,
        in_nav: true,
    },
    Area {
        path: "/credentials",
        label: "Credentials",
        roles: ADMINS,
        in_nav: true,
    },
    Area {
        path: "/texts",
        label: "Customer texts",
        roles: ADMINS,
        in_nav: true,
    },
    Area {
        path: "/audit",
        label: "Audit log",
        roles: AUDIT_READERS,
        in_nav: true,
    },
    Area {
        path: "/account",
        label: "My account",
        roles: EVERYONE,
        in_nav: false,
    },
];

/// The one page a user who must still replace an initial password may open.
pub const PASSWORD_PAGE: &str = "/account/password";

/// The one page a half-signed-in user may open: the second step of signing in.
pub const SECOND_STEP_PAGE: &str = "/login/code";

/// The page where a user sets up their authenticator app; the one page (with the password
/// page) open to a user whose role must have a second factor and who has none yet.
pub const ENROL_PAGE: &str = "/account/authenticator";

/// The page where a user confirms it is them (step-up) before a sensitive download, then goes
/// on to it.
pub const CONFIRM_PAGE: &str = "/account/confirm";

/// The area a path belongs to, if any (the dashboard `/` belongs to none and is open to all
/// signed-in users).
pub fn area_for_path(path: &str) -> Option<&'static Area> {
    AREAS.iter().find(|area| {
        path == area.path
            || path
                .strip_prefix(area.path)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// Whether `role` may open the page at `path`.
pub fn may_open(role: Role, path: &str) -> bool {
    page_access(path).admits(role)
}

/// The rule of the console page at `path`: its area's roles; the dashboard and other pages
/// outside an area are open to every role; the password page to any signed-in user; the
/// sign-in page and first-run setup links to anyone.
pub fn page_access(path: &str) -> Access {
    if path == "/login" || path.starts_with("/setup/") {
        return Access::Public;
    }
    if path == SECOND_STEP_PAGE {
        return Access::SecondStep;
    }
    if path == PASSWORD_PAGE || path == ENROL_PAGE {
        return Access::AnySignedIn;
    }
    Access::Roles(area_for_path(path).map_or(EVERYONE, |area| area.roles))
}

/// Every server function's endpoint (the part after `/api/`) and who may call it. A function
/// missing from this table cannot be called at all, over HTTP or in-process.
pub const SERVER_FN_ACCESS: &[(&str, Access)] = &[
    // api/auth.rs
    ("whoami", Access::Public),
    ("login", Access::Public),
    ("logout", Access::Public),
    ("setup_state", Access::Public),
    ("create_first_admin", Access::Public),
    ("change_password", Access::AnySignedIn),
    ("second_step", Access::SecondStep),
    // api/factors.rs
    ("authenticator_status", Access::AnySignedIn),
    ("start_authenticator", Access::AnySignedIn),
    ("confirm_authenticator", Access::AnySignedIn),
    ("step_up", Access::Roles(EVERYONE)),
    ("sign_in_options", Access::Public),
    ("new_recovery_codes", Access::StepUp(EVERYONE)),
    ("remove_authenticator", Access::StepUp(EVERYONE)),
    // api/passkeys.rs
    ("list_passkeys", Access::AnySignedIn),
    ("begin_passkey_registration", Access::AnySignedIn),
    ("finish_passkey_registration", Access::AnySignedIn),
    ("remove_passkey", Access::StepUp(EVERYONE)),
    ("second_step_options", Access::SecondStep),
    ("begin_passkey_sign_in", Access::SecondStep),
    ("finish_passkey_sign_in", Access::SecondStep),
    ("begin_passkey_step_up", Access::Roles(EVERYONE)),
    ("begin_passkey_login", Access::Public),
    ("finish_passkey_login", Access::Public),
    ("finish_passkey_step_up", Access::Roles(EVERYONE)),
    // api/audit.rs
    ("list_audit", Access::Roles(AUDIT_READERS)),
    ("verify_audit", Access::Roles(AUDIT_READERS)),
    // api/credentials.rs
    ("list_credentials", Access::Roles(ADMINS)),
    ("save_credential", Access::StepUp(ADMINS)),
    ("test_credential", Access::StepUp(ADMINS)),
    // api/links.rs
    ("link_options", Access::Roles(ACTORS)),
    ("create_link", Access::Roles(ACTORS)),
    ("session_detail", Access::Roles(READERS)),
    ("list_sessions", Access::Roles(READERS)),
    ("send_link", Access::Roles(ACTORS)),
    ("cancel_link", Access::Roles(ACTORS)),
    ("record_outcome", Access::Roles(ACTORS)),
    ("regenerate_link", Access::Roles(ACTORS)),
    ("set_link_reminders", Access::Roles(ACTORS)),
    ("dashboard_stats", Access::Roles(READERS)),
    ("email_template", Access::Roles(ADMINS)),
    ("save_email_template", Access::StepUp(ADMINS)),
    ("reminder_templates", Access::Roles(ADMINS)),
    ("save_reminder_templates", Access::StepUp(ADMINS)),
    // api/notice.rs
    ("privacy_notice", Access::Roles(ADMINS)),
    ("save_privacy_notice", Access::StepUp(ADMINS)),
    // api/users.rs
    ("list_users", Access::Roles(ADMINS)),
    ("create_user", Access::Roles(ADMINS)),
    ("set_user_role", Access::StepUp(ADMINS)),
    ("set_user_disabled", Access::Roles(ADMINS)),
    ("reset_user_password", Access::StepUp(ADMINS)),
    ("reset_user_factors", Access::StepUp(ADMINS)),
    ("set_user_sign_on", Access::StepUp(ADMINS)),
];

/// Every file route (as the router spells it) and who may fetch it.
pub const FILE_ACCESS: &[(&str, Access)] = &[
    ("/audit/export.csv", Access::Roles(AUDIT_READERS)),
    ("/sessions/export.csv", Access::Roles(READERS)),
    // The same export with phone numbers and email addresses unmasked.
    (CONTACTS_EXPORT_ROUTE, CONTACTS_EXPORT),
    // The QR code is the live link: those who hand links over (`LIVE_LINKS`).
    ("/sessions/{public_id}/qr.svg", LIVE_LINKS),
    // Every text the sandbox "sent", with customers' names and live links.
    ("/sandbox/messages", Access::Roles(ADMINS)),
    // The stream of session moves that keeps the sessions pages current (statuses only).
    (SESSION_EVENTS_ROUTE, Access::Roles(READERS)),
];

/// Every customer-facing route and who may open it: customers have no account, so these are
/// public; they are listed so that the table names every door the server has.
pub const CUSTOMER_ACCESS: &[(&str, Access)] = &[
    ("/kyc/return", Access::Public),
    ("/kyc/return/{public_id}", Access::Public),
    // KYC Desk's customer link: the page, Start, a one-time code, withdrawing consent.
    ("/v/{code}", Access::Public),
    ("/v/{code}/start", Access::Public),
    ("/v/{code}/code", Access::Public),
    ("/v/{code}/withdraw", Access::Public),
];

/// The routes of signing in that are neither console pages nor server functions: single
/// sign-on's start (a step-up through it checks the signed-in user itself) and the identity
/// provider's callback.
pub const SIGN_IN_ACCESS: &[(&str, Access)] = &[
    ("/login/sso", Access::Public),
    ("/login/sso/callback", Access::Public),
];

/// The stream of session moves (server-sent events) the sessions pages listen to.
pub const SESSION_EVENTS_ROUTE: &str = "/sessions/events";

/// Who may see a session's live link (and its QR code): those who hand links over. Auditors
/// see that a link exists and its status only.
pub const LIVE_LINKS: Access = Access::Roles(ACTORS);

/// Who may export sessions with phone numbers and email addresses unmasked: admins, after a
/// step-up.
pub const CONTACTS_EXPORT: Access = Access::StepUp(ADMINS);

/// The file-route name of the sessions export with contact details (`contacts=1`).
pub const CONTACTS_EXPORT_ROUTE: &str = "/sessions/export.csv?contacts=1";

/// The access rule of the server function at `endpoint` in the standard table.
pub fn access_of(endpoint: &str) -> Option<Access> {
    rule_in(SERVER_FN_ACCESS, endpoint)
}

fn rule_in(table: &[(&str, Access)], name: &str) -> Option<Access> {
    table
        .iter()
        .find(|(entry, _)| *entry == name)
        .map(|(_, access)| *access)
}

/// The access table a server runs with: the standard one ([`AccessTable::standard`]), or one a
/// test built with a rule changed, to show that the table alone decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTable {
    server_fns: Cow<'static, [(&'static str, Access)]>,
    files: Cow<'static, [(&'static str, Access)]>,
    customer: Cow<'static, [(&'static str, Access)]>,
    sign_in: Cow<'static, [(&'static str, Access)]>,
}

impl Default for AccessTable {
    fn default() -> Self {
        Self::standard()
    }
}

impl AccessTable {
    /// [`SERVER_FN_ACCESS`], [`FILE_ACCESS`], [`CUSTOMER_ACCESS`] and [`SIGN_IN_ACCESS`].
    pub fn standard() -> Self {
        AccessTable {
            server_fns: Cow::Borrowed(SERVER_FN_ACCESS),
            files: Cow::Borrowed(FILE_ACCESS),
            customer: Cow::Borrowed(CUSTOMER_ACCESS),
            sign_in: Cow::Borrowed(SIGN_IN_ACCESS),
        }
    }

    /// This table with the rule of server function `endpoint` replaced.
    pub fn with_server_fn(mut self, endpoint: &'static str, access: Access) -> Self {
        let rules = self.server_fns.to_mut();
        match rules.iter_mut().find(|(entry, _)| *entry == endpoint) {
            Some(rule) => rule.1 = access,
            None => rules.push((endpoint, access)),
        }
        self
    }

    /// The rule of the server function at `endpoint`; `None`: no such function may be called.
    pub fn server_fn(&self, endpoint: &str) -> Option<Access> {
        rule_in(&self.server_fns, endpoint)
    }

    /// The rule of the file route `route`; `None`: not a file route of the table.
    pub fn file(&self, route: &str) -> Option<Access> {
        rule_in(&self.files, route)
    }

    /// The rule of the customer-facing route `route`; `None`: not a customer route of the table.
    pub fn customer(&self, route: &str) -> Option<Access> {
        rule_in(&self.customer, route)
    }

    /// The rule of the sign-in route `route`; `None`: not a sign-in route of the table.
    pub fn sign_in(&self, route: &str) -> Option<Access> {
        rule_in(&self.sign_in, route)
    }

    /// Every server-function rule.
    pub fn server_fns(&self) -> &[(&'static str, Access)] {
        &self.server_fns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_their_areas() {
        assert!(may_open(Role::Operator, "/links"));
        assert!(!may_open(Role::Auditor, "/links/new"));
        assert!(may_open(Role::Auditor, "/"));
        assert!(!may_open(Role::Operator, "/audit"));
        assert!(may_open(Role::Admin, "/users"));
        assert!(!may_open(Role::Admin, "/usersx") || area_for_path("/usersx").is_none());
        assert_eq!(page_access(PASSWORD_PAGE), Access::AnySignedIn);
    }

    #[test]
    fn a_changed_rule_is_the_rule() {
        let table = AccessTable::standard().with_server_fn("list_users", Access::Roles(&[]));
        assert_eq!(table.server_fn("list_users"), Some(Access::Roles(&[])));
        assert_eq!(
            AccessTable::standard().server_fn("list_users"),
            Some(Access::Roles(ADMINS))
        );
        assert_eq!(table.server_fn("no_such_fn"), None);
        assert_eq!(
            table.file("/sessions/export.csv"),
            Some(Access::Roles(READERS))
        );
    }
}
