//! Pages and the small components they share. UI only: no secrets, no SQL.

pub mod account;
pub mod audit;
pub mod credentials;
pub mod dashboard;
pub mod placeholders;
pub mod users;

use crate::types::{AppError, CurrentUser, may_open};
use leptos::prelude::*;
use leptos_meta::Title;

/// A labelled input with its error message underneath.
#[component]
pub fn TextField(
    /// Visible label.
    label: &'static str,
    /// Form field name (and the name the server uses in field errors).
    name: &'static str,
    /// Unique id prefix on this page (default `f`).
    #[prop(into, optional)]
    id_prefix: Option<String>,
    /// Input type.
    #[prop(default = "text")]
    kind: &'static str,
    /// Browser autocomplete hint.
    #[prop(default = "off")]
    autocomplete: &'static str,
    /// The field's current error, if any.
    #[prop(into, default = Signal::stored(None))]
    error: Signal<Option<String>>,
    /// Help text under the label.
    #[prop(optional)]
    hint: Option<&'static str>,
    /// Maximum length the browser lets through.
    #[prop(optional)]
    maxlength: Option<usize>,
    /// Whether the field is required.
    #[prop(default = true)]
    required: bool,
) -> impl IntoView {
    let id = format!("{}-{name}", id_prefix.as_deref().unwrap_or("f"));
    let error_id = format!("{id}-error");
    let hint_id = format!("{id}-hint");
    let described = {
        let error_id = error_id.clone();
        let hint_id = hint_id.clone();
        move || {
            let mut ids = Vec::new();
            if hint.is_some() {
                ids.push(hint_id.clone());
            }
            if error.get().is_some() {
                ids.push(error_id.clone());
            }
            ids.join(" ")
        }
    };
    view! {
        <div class="field" class:invalid=move || error.get().is_some()>
            <label for=id.clone()>{label}</label>
            {hint.map(|text| view! { <p class="hint" id=hint_id.clone()>{text}</p> })}
            <input
                id=id.clone()
                name=name
                type=kind
                autocomplete=autocomplete
                required=required
                maxlength=maxlength
                aria-invalid=move || if error.get().is_some() { "true" } else { "false" }
                aria-describedby=described
            />
            {move || {
                error
                    .get()
                    .map(|message| {
                        view! {
                            <p class="field-error" id=error_id.clone()>
                                {message}
                            </p>
                        }
                    })
            }}
        </div>
    }
}

/// The form-level message of the latest result of an action, if it failed.
pub fn failure_message<T: Clone + Send + Sync + 'static>(
    value: Signal<Option<Result<T, AppError>>>,
) -> Signal<Option<String>> {
    Signal::derive(move || match value.get() {
        Some(Err(error)) => Some(error.to_string()),
        _ => None,
    })
}

/// The latest result of a server action, as a copyable signal.
pub fn result_of<S>(action: ServerAction<S>) -> Signal<Option<Result<S::Output, AppError>>>
where
    S: leptos::server_fn::ServerFn<Error = AppError> + Clone + Send + Sync + 'static,
    S::Output: Clone + Send + Sync + 'static,
{
    Signal::derive(move || action.value().get())
}

/// The message of one field in the latest result of an action.
pub fn field_message<T: Clone + Send + Sync + 'static>(
    value: Signal<Option<Result<T, AppError>>>,
    field: &'static str,
) -> Signal<Option<String>> {
    Signal::derive(move || crate::types::field_error(&value.get(), field))
}

/// A red box with a plain-words failure, announced to screen readers.
#[component]
pub fn ErrorBanner(#[prop(into)] message: Signal<Option<String>>) -> impl IntoView {
    move || {
        message.get().map(|text| {
            view! {
                <div class="banner error" role="alert" data-testid="form-error">
                    {text}
                </div>
            }
        })
    }
}

/// Shown instead of a page the role may not open (the server answers it with 403).
#[component]
pub fn Forbidden() -> impl IntoView {
    view! {
        <Title text="No access" />
        <section class="panel forbidden" data-testid="forbidden">
            <h1>"403 — No access"</h1>
            <p>
                "Your role cannot open this page. If you need it for your work, ask an admin to change your role."
            </p>
            <a href="/">"Back to the dashboard"</a>
        </section>
    }
}

/// Renders `children` only for roles that may open `path`; everyone else sees [`Forbidden`].
#[component]
pub fn Guarded(path: &'static str, children: Children) -> impl IntoView {
    let me = expect_context::<CurrentUser>();
    if may_open(me.role, path) {
        children().into_any()
    } else {
        view! { <Forbidden /> }.into_any()
    }
}

/// The page for unknown addresses.
#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(axum::http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text="Not found" />
        <main class="standalone">
            <h1>"Page not found"</h1>
            <p>"There is nothing at this address. Check the link, or go back to the dashboard."</p>
            <a href="/">"Dashboard"</a>
        </main>
    }
}

/// Full page load of `path` (used after sign-in and sign-out so every page starts fresh).
pub fn go_to(path: &str) {
    #[cfg(feature = "hydrate")]
    {
        let _ = window().location().set_href(path);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = path;
}
