//! The HTML shell, the router and the signed-in layout with its role-filtered navigation.

use crate::access::AREAS;
use crate::api::auth::Logout;
use crate::pages::account::{ChangePasswordPage, LoginPage, SetupPage};
use crate::pages::audit::AuditLogPage;
use crate::pages::authenticator::{AuthenticatorPage, SecondStepPage};
use crate::pages::credentials::CredentialsPage;
use crate::pages::dashboard::Dashboard;
use crate::pages::links::LinksPage;
use crate::pages::sessions::{SessionDetailPage, SessionsPage};
use crate::pages::step_up::ConfirmPage;
use crate::pages::texts::TextsPage;
use crate::pages::users::UsersPage;
use crate::pages::{Guarded, NotFound, go_to};
use crate::types::CurrentUser;
use leptos::prelude::*;
use leptos_meta::{MetaTags, Title, provide_meta_context};
use leptos_router::components::{Outlet, ParentRoute, Redirect, Route, Router, Routes};
use leptos_router::{Lazy, LazyRoute, SsrMode, lazy_route, path};

/// The whole HTML document rendered by the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(nonce) = use_context::<axum::http::request::Parts>().and_then(|parts| {
        parts
            .extensions
            .get::<crate::server::web::CspNonce>()
            .cloned()
    }) {
        provide_context(leptos::nonce::Nonce::from_value(nonce.0));
    }
    // The stylesheet's content-hashed name belongs to the build the server runs.
    #[cfg(feature = "ssr")]
    let stylesheet = use_context::<crate::server::state::AppState>()
        .map(|state| state.assets.stylesheet().to_string())
        .unwrap_or_else(|| crate::server::web::assets::stylesheet_href().to_string());
    #[cfg(not(feature = "ssr"))]
    let stylesheet = "/pkg/kyc-desk.css".to_string();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light" />
                <link rel="icon" href="/favicon.svg" type="image/svg+xml" />
                <link rel="stylesheet" id="leptos" href=stylesheet />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The application: routes and the sign-in check of the console pages.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Title formatter=|text: String| if text.is_empty() { "KYC Desk".to_string() } else { format!("{text} · KYC Desk") } />
        <Router>
            <Routes fallback=NotFound>
                <Route path=path!("/login") view={Lazy::<LoginRoute>::new()} ssr=SsrMode::Async />
                <Route path=path!("/login/code") view={Lazy::<SecondStepRoute>::new()} ssr=SsrMode::Async />
                <Route path=path!("/setup/:token") view={Lazy::<SetupRoute>::new()} ssr=SsrMode::Async />
                <ParentRoute path=path!("") view=Console ssr=SsrMode::Async>
                    <Route path=path!("") view={Lazy::<DashboardRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("links") view={Lazy::<LinksRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("sessions") view={Lazy::<SessionsRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("sessions/:public_id") view={Lazy::<SessionDetailRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("users") view={Lazy::<UsersRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("credentials") view={Lazy::<CredentialsRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("texts") view={Lazy::<TextsRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("audit") view={Lazy::<AuditLogRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("account/password") view={Lazy::<AccountRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("account/authenticator") view={Lazy::<AuthenticatorRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("account/confirm") view={Lazy::<ConfirmRoute>::new()} ssr=SsrMode::Async />
                </ParentRoute>
            </Routes>
        </Router>
    }
}

/// Marks the page as hydrated once the shown route's own code has run: browser tests wait for
/// this marker instead of sleeping, since clicks before hydration do nothing. Set by each route
/// (not by the app) because a route's code arrives after the app's (see [`lazy_pages`]).
pub(crate) fn mark_hydrated() {
    Effect::new(move |_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
}

/// Each page is a lazily loaded route: its code is its own part of the browser bundle
/// (`cargo leptos build --split`), fetched when the page is first shown, so the first visit of
/// any page loads the app's frame and that page, not the whole console.
macro_rules! lazy_pages {
    ($($route:ident => $page:ident),* $(,)?) => {$(
        #[doc = concat!("The lazily loaded route of [`", stringify!($page), "`].")]
        struct $route;

        #[lazy_route]
        impl LazyRoute for $route {
            fn data() -> Self {
                $route
            }

            fn view(_this: Self) -> AnyView {
                mark_hydrated();
                view! { <$page /> }.into_any()
            }
        }
    )*};
}

lazy_pages! {
    LoginRoute => LoginPage,
    SetupRoute => SetupPage,
    DashboardRoute => Dashboard,
    LinksRoute => LinksPage,
    SessionsRoute => SessionsPage,
    SessionDetailRoute => SessionDetailPage,
    UsersRoute => UsersPage,
    CredentialsRoute => CredentialsPage,
    TextsRoute => TextsPage,
    AuditLogRoute => AuditLogPage,
    AccountRoute => AccountPage,
    SecondStepRoute => SecondStepPage,
    AuthenticatorRoute => AuthenticatorAccountPage,
    ConfirmRoute => ConfirmAccountPage,
}

#[component]
fn ConfirmAccountPage() -> impl IntoView {
    view! {
        <Guarded path="/account">
            <ConfirmPage />
        </Guarded>
    }
}

#[component]
fn AccountPage() -> impl IntoView {
    view! {
        <Guarded path="/account">
            <ChangePasswordPage />
        </Guarded>
    }
}

#[component]
fn AuthenticatorAccountPage() -> impl IntoView {
    view! {
        <Guarded path="/account">
            <AuthenticatorPage />
        </Guarded>
    }
}

/// Pages that need a signed-in user: renders the layout for the user the page door admitted.
///
/// The user is not a resource awaited inside a `Suspense`: a `Suspense` re-runs its children
/// to find every resource they read, and each run would build the page below it again — with
/// its resources, so a page's data was fetched (and a read of personal data recorded) two or
/// three times per load, and a page whose data changed between those fetches (the audit log,
/// which records its own reading) failed to hydrate. The page door has already authenticated
/// the request; its user travels to the browser with the page as a shared value.
#[component]
fn Console() -> impl IntoView {
    match SharedValue::new(admitted_user).into_inner() {
        Some(me) => view! { <Layout me=me /> }.into_any(),
        None => {
            // In the browser after the first load (a move into the console from a page outside
            // it): load the address in full, so the server's page door decides.
            #[cfg(feature = "hydrate")]
            if let Ok(href) = window().location().href() {
                go_to(&href);
            }
            view! { <Redirect path="/login" /> }.into_any()
        }
    }
}

/// The user the page door admitted for this request (on the server); `None` in the browser,
/// where the value only ever comes from the server-rendered page.
fn admitted_user() -> Option<CurrentUser> {
    #[cfg(feature = "ssr")]
    {
        crate::server::auth::guard::admitted_user().map(|user| user.current_user())
    }
    #[cfg(not(feature = "ssr"))]
    {
        None
    }
}

#[component]
fn Layout(me: CurrentUser) -> impl IntoView {
    provide_context(me.clone());
    let logout = ServerAction::<Logout>::new();
    let signed_on = me.single_sign_on;
    Effect::new(move |_| {
        if logout.value().get().is_some() {
            // After a single sign-on the sign-in page offers to sign out at the provider too.
            go_to(if signed_on {
                "/login?signed_out=sso"
            } else {
                "/login"
            });
        }
    });
    let nav = AREAS
        .iter()
        .filter(|area| {
            area.in_nav && area.roles.contains(&me.role) && !me.must_change_password && !me.must_enrol
        })
        .map(|area| view! { <a href=area.path data-testid=format!("nav{}", area.path)>{area.label}</a> })
        .collect_view();
    view! {
        <div class="console">
            <header class="topbar">
                <a class="brand" href="/">"KYC Desk"</a>
                <nav aria-label="Main" data-testid="main-nav">{nav}</nav>
                <div class="me">
                    <span class="who" data-testid="current-user">{me.display_name.clone()}</span>
                    <span class="badge role" data-testid="current-role">{me.role.label()}</span>
                    {(!me.sso_only).then(|| view! { <a href="/account/password">"Change password"</a> })}
                    <a href="/account/authenticator" data-testid="authenticator-link">"Authenticator"</a>
                    <ActionForm action=logout attr:class="inline">
                        <button type="submit" class="link" data-testid="sign-out">"Sign out"</button>
                    </ActionForm>
                </div>
            </header>
            <main class="content">
                {me.notice.clone().map(|notice| view! {
                    <p class="banner warning" role="status" data-testid="account-notice">{notice}</p>
                })}
                <Outlet />
            </main>
        </div>
    }
}
