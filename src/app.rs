//! The HTML shell, the router and the signed-in layout with its role-filtered navigation.

use crate::access::AREAS;
use crate::api::auth::{Logout, whoami};
use crate::pages::account::{ChangePasswordPage, LoginPage, SetupPage};
use crate::pages::audit::AuditLogPage;
use crate::pages::credentials::CredentialsPage;
use crate::pages::dashboard::Dashboard;
use crate::pages::links::LinksPage;
use crate::pages::sessions::{SessionDetailPage, SessionsPage};
use crate::pages::users::UsersPage;
use crate::pages::{ErrorBanner, Guarded, NotFound, go_to};
use crate::types::{AppError, CurrentUser};
use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{Outlet, ParentRoute, Redirect, Route, Router, Routes};
use leptos_router::{SsrMode, path};

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
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light" />
                <link rel="icon" href="/favicon.svg" type="image/svg+xml" />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The signed-in user as loaded for this page.
pub type UserResource = Resource<Result<Option<CurrentUser>, AppError>>;

/// The application: routes and the sign-in check of the console pages.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Browser tests wait for this marker instead of sleeping: clicks before hydration do nothing.
    Effect::new(move |_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
    view! {
        <Stylesheet id="leptos" href="/pkg/kyc-desk.css" />
        <Title formatter=|text: String| if text.is_empty() { "KYC Desk".to_string() } else { format!("{text} · KYC Desk") } />
        <Router>
            <Routes fallback=NotFound>
                <Route path=path!("/login") view=LoginPage ssr=SsrMode::Async />
                <Route path=path!("/setup/:token") view=SetupPage ssr=SsrMode::Async />
                <ParentRoute path=path!("") view=Console ssr=SsrMode::Async>
                    <Route path=path!("") view=Dashboard ssr=SsrMode::Async />
                    <Route path=path!("links") view=LinksPage ssr=SsrMode::Async />
                    <Route path=path!("sessions") view=SessionsPage ssr=SsrMode::Async />
                    <Route path=path!("sessions/:public_id") view=SessionDetailPage ssr=SsrMode::Async />
                    <Route path=path!("users") view=UsersPage ssr=SsrMode::Async />
                    <Route path=path!("credentials") view=CredentialsPage ssr=SsrMode::Async />
                    <Route path=path!("audit") view=AuditLogPage ssr=SsrMode::Async />
                    <Route path=path!("account/password") view=AccountPage ssr=SsrMode::Async />
                </ParentRoute>
            </Routes>
        </Router>
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

/// Pages that need a signed-in user: loads the user, then renders the layout.
#[component]
fn Console() -> impl IntoView {
    // Created here, not in App: a page that never reads a resource must not create one (an
    // unread resource could hold the server-rendered response open).
    let user: UserResource = Resource::new(|| (), |_| whoami());
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match user.await {
                    Ok(Some(me)) => view! { <Layout me=me /> }.into_any(),
                    Ok(None) => view! { <Redirect path="/login" /> }.into_any(),
                    Err(error) => view! {
                        <main class="standalone">
                            <ErrorBanner message=Signal::derive(move || Some(error.to_string())) />
                        </main>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn Layout(me: CurrentUser) -> impl IntoView {
    provide_context(me.clone());
    let logout = ServerAction::<Logout>::new();
    Effect::new(move |_| {
        if logout.value().get().is_some() {
            go_to("/login");
        }
    });
    let nav = AREAS
        .iter()
        .filter(|area| area.in_nav && area.roles.contains(&me.role) && !me.must_change_password)
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
                    <a href="/account/password">"Change password"</a>
                    <ActionForm action=logout attr:class="inline">
                        <button type="submit" class="link" data-testid="sign-out">"Sign out"</button>
                    </ActionForm>
                </div>
            </header>
            <main class="content">
                <Outlet />
            </main>
        </div>
    }
}
