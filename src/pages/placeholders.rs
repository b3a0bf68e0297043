//! Honest placeholders for areas whose features arrive in later releases. The navigation
//! and the role guards in front of them are already real.

use super::Guarded;
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
fn ComingNext(title: &'static str, path: &'static str, what: &'static str) -> impl IntoView {
    view! {
        <Title text=title />
        <Guarded path=path>
            <section class="panel" data-testid="coming-next">
                <h1>{title}</h1>
                <p class="banner info">"Coming next: " {what}</p>
                <p class="muted">"Nothing on this page works yet, and nothing here pretends to."</p>
            </section>
        </Guarded>
    }
}

/// New KYC link (operators and admins).
#[component]
pub fn LinksPage() -> impl IntoView {
    view! { <ComingNext title="New KYC link" path="/links" what="issuing Message Central and Eko DigiLocker links, with copy, QR code, email and SMS hand-over." /> }
}

/// KYC session history (everyone; auditors read-only).
#[component]
pub fn SessionsPage() -> impl IntoView {
    view! { <ComingNext title="Sessions" path="/sessions" what="the history of every KYC session, with filters, search, timeline and CSV export." /> }
}
