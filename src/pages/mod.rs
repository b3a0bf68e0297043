//! Pages and the small components they share. UI only: no secrets, no SQL.

pub mod account;
pub mod audit;
pub mod authenticator;
pub mod credentials;
pub mod dashboard;
pub mod links;
pub mod live;
pub mod sessions;
pub mod step_up;
pub mod texts;
pub mod users;
pub mod webauthn;

use crate::access::may_open;
use crate::types::{AppError, CurrentUser, KycStatus, Role};
use leptos::prelude::*;
use leptos::server::codee::{Decoder, Encoder};
use leptos_meta::Title;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How a page's data travels from the server's rendering into the browser: JSON, as Leptos'
/// own default codec, but read from bytes (`serde_json::from_slice`) rather than from a string.
///
/// Why: the same data, fetched again in the browser (a filter changed, a save refreshed it),
/// comes from its server function, which reads its JSON answer from bytes. Leptos' default
/// reads the page's copy from a string, and serde makes a separate reader of every type for
/// each source: every type a page loads was in the bundle twice (about 75 KB of WebAssembly
/// before optimisation). One source, one reader.
pub struct PageJson;

impl<T: Serialize> Encoder<T> for PageJson {
    type Error = serde_json::Error;
    type Encoded = String;

    fn encode(value: &T) -> Result<String, serde_json::Error> {
        serde_json::to_string(value)
    }
}

impl<T: DeserializeOwned> Decoder<T> for PageJson {
    type Error = serde_json::Error;
    type Encoded = str;

    fn decode(text: &str) -> Result<T, serde_json::Error> {
        serde_json::from_slice(text.as_bytes())
    }
}

/// A page's data: as `Resource::new` (loaded while the server renders, handed to the browser
/// with the page, fetched again when `source` changes), carried by [`PageJson`].
#[track_caller]
pub fn page_resource<T, S, Fut>(
    source: impl Fn() -> S + Send + Sync + 'static,
    fetcher: impl Fn(S) -> Fut + Send + Sync + 'static,
) -> Resource<T, PageJson>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    S: PartialEq + Clone + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    Resource::new_with_options(source, fetcher, false)
}

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
    let described = described_by(hint.map(|_| hint_id.clone()), error_id.clone(), error);
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

/// The `aria-describedby` value of a field: its hint's id (if it has a hint) and, while it
/// shows an error, the error's id.
pub fn described_by(
    hint_id: Option<String>,
    error_id: String,
    error: Signal<Option<String>>,
) -> impl Fn() -> String + Clone + Send + Sync + 'static {
    move || {
        let mut ids: Vec<&str> = hint_id.iter().map(String::as_str).collect();
        if error.get().is_some() {
            ids.push(&error_id);
        }
        ids.join(" ")
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
    crate::app::mark_hydrated();
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

/// A status badge: colour and text, so it reads without colour too.
#[component]
pub fn StatusBadge(status: KycStatus) -> impl IntoView {
    view! {
        <span class=format!("badge status-{}", status.as_str()) data-testid="status-badge" data-status=status.as_str()>
            {status.label()}
        </span>
    }
}

/// Whether `role` may create, send, cancel and regenerate links: the access table's rule of
/// `create_link` (the server checks each of those functions by its own rule too).
pub fn may_act(role: Role) -> bool {
    crate::access::access_of("create_link").is_some_and(|access| access.admits(role))
}

/// A fresh random key for one form instance (32 hex digits), so a resubmitted form never
/// makes a second link. Made on the server for the first render and in the browser after.
pub fn new_idempotency_key() -> String {
    #[cfg(feature = "ssr")]
    {
        uuid::Uuid::new_v4().simple().to_string()
    }
    #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
    {
        (0..4)
            .map(|_| format!("{:08x}", (js_sys::Math::random() * 4_294_967_296.0) as u32))
            .collect()
    }
    #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
    {
        use std::hash::{BuildHasher, Hasher};
        let a = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let b = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        format!("{a:016x}{b:016x}")
    }
}

/// The current time in Unix seconds (the browser's clock after hydration).
pub fn now_unix() -> i64 {
    #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
    {
        (js_sys::Date::now() / 1000.0).floor() as i64
    }
    #[cfg(not(all(feature = "hydrate", not(feature = "ssr"))))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default()
    }
}

/// `1:02:05 left`, `4:09 left`, `0:12 left`, or `expired`.
pub fn format_remaining(seconds: i64) -> String {
    if seconds <= 0 {
        return "expired".into();
    }
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02} left")
    } else {
        format!("{m}:{s:02} left")
    }
}

/// A live countdown to `expires_at` (Unix seconds); ticks every second in the browser.
#[component]
pub fn Countdown(expires_at: i64) -> impl IntoView {
    let now = RwSignal::new(now_unix());
    Effect::new(move |_| {
        if let Ok(handle) = set_interval_with_handle(
            move || now.set(now_unix()),
            std::time::Duration::from_secs(1),
        ) {
            on_cleanup(move || handle.clear());
        }
    });
    let left = move || expires_at - now.get();
    view! {
        <span
            class="countdown"
            class:expired=move || left() <= 0
            class:soon=move || (1..=120).contains(&left())
            role="timer"
            data-testid="countdown"
        >
            {move || format_remaining(left())}
        </span>
    }
}

/// `expires 2026-11-22 10:00 UTC` (as lists show it) without its first word, and that word
/// as a label: `("Expires", "2026-11-22 10:00 UTC")`.
pub fn split_when(text: &str) -> (&'static str, String) {
    if let Some(rest) = text.strip_prefix("expires ") {
        ("Expires", rest.to_string())
    } else if let Some(rest) = text.strip_prefix("ended ") {
        ("Ended", rest.to_string())
    } else {
        ("Expires", text.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::markup::escape_markup;

    #[test]
    fn remaining_time_reads_well() {
        assert_eq!(format_remaining(0), "expired");
        assert_eq!(format_remaining(-5), "expired");
        assert_eq!(format_remaining(9), "0:09 left");
        assert_eq!(format_remaining(249), "4:09 left");
        assert_eq!(format_remaining(3725), "1:02:05 left");
    }

    #[test]
    fn keys_are_long_enough_and_differ() {
        let a = new_idempotency_key();
        let b = new_idempotency_key();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn times_are_split_from_their_word() {
        assert_eq!(
            split_when("expires 2026-11-22 10:00 UTC"),
            ("Expires", "2026-11-22 10:00 UTC".to_string())
        );
        assert_eq!(
            split_when("ended 2026-11-22 10:00 UTC"),
            ("Ended", "2026-11-22 10:00 UTC".to_string())
        );
        assert_eq!(split_when("—"), ("Expires", "—".to_string()));
    }

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            escape_markup("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
