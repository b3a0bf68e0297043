//! The landing page after sign-in.

use crate::types::{AREAS, CurrentUser};
use leptos::prelude::*;
use leptos_meta::Title;

/// Landing page: a short orientation by role. The KYC status dashboard replaces its body
/// when links and sessions exist.
#[component]
pub fn Dashboard() -> impl IntoView {
    let me = expect_context::<CurrentUser>();
    let areas = AREAS
        .iter()
        .filter(|area| area.in_nav && area.roles.contains(&me.role))
        .map(|area| {
            let text = match area.path {
                "/links" => "Issue a KYC link to a customer and hand it over.",
                "/sessions" => "Follow every verification to its end.",
                "/users" => "Add staff, change roles, disable accounts, reset passwords.",
                "/credentials" => "Keep and rotate the provider credentials KYC Desk signs with.",
                "/audit" => "Review the tamper-evident log of everything staff did.",
                _ => "",
            };
            view! {
                <li class="card">
                    <a href=area.path>
                        <strong>{area.label}</strong>
                    </a>
                    <p class="muted">{text}</p>
                </li>
            }
        })
        .collect_view();
    view! {
        <Title text="Dashboard" />
        <section class="panel">
            <h1>{format!("Welcome, {}", me.display_name)}</h1>
            <p class="muted">
                {format!("You are signed in as {} ({}).", me.email, me.role.label())}
            </p>
            <ul class="cards" data-testid="dashboard-areas">{areas}</ul>
        </section>
    }
}
