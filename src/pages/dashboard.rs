//! The landing page after sign-in: the KYC figures, then the areas the role may open.

use super::links::SendLinkButtons;
use super::{StatusBadge, may_act, page_resource, split_when};
use crate::access::AREAS;
use crate::api::links::{get_dashboard_stats, link_options};
use crate::channel::Channel;
use crate::markup::escape_markup;
use crate::types::{CurrentUser, DashboardStats, KycStatus, SessionSummary};
use leptos::prelude::*;
use leptos_meta::Title;

/// Landing page: KYC figures for everyone, then a short orientation by role.
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
                "/texts" => {
                    "Edit the link email, the reminders and the privacy notice customers read."
                }
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
        </section>
        <KycFigures />
        <section class="panel">
            <h2>"Areas"</h2>
            <ul class="cards" data-testid="dashboard-areas">{areas}</ul>
        </section>
    }
}

#[component]
fn KycFigures() -> impl IntoView {
    let me = expect_context::<CurrentUser>();
    let acts = may_act(me.role);
    let stats = page_resource(|| (), |_| get_dashboard_stats());
    // The figures follow the sessions as they move.
    super::live::on_session_moves(move |_| stats.refetch());
    // The channel a one-click resend uses: SMS when it is set up, else email. One server call
    // per resource: the server may render this page more than once, and every rendering must
    // resolve to the same value or the browser's copy would not match.
    let channel = page_resource(
        || (),
        move |_| async move {
            if !acts {
                return None;
            }
            link_options().await.ok().and_then(|o| {
                [Channel::Sms, Channel::Email]
                    .into_iter()
                    .find(|c| o.channels.iter().any(|x| x == c.as_str()))
                    .map(|c| c.to_string())
            })
        },
    );
    view! {
        <Suspense fallback=|| view! { <section class="panel"><p class="muted">"Loading the figures…"</p></section> }>
            {move || Suspend::new(async move {
                let channel = channel.await;
                match stats.await {
                    Ok(stats) => view! { <FiguresView stats=stats channel=channel acts=acts /> }.into_any(),
                    Err(error) => view! {
                        <section class="panel">
                            <div class="banner error" role="alert">{error.to_string()}</div>
                        </section>
                    }
                    .into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn FiguresView(stats: DashboardStats, channel: Option<String>, acts: bool) -> impl IntoView {
    let heads = stats
        .periods
        .iter()
        .map(|(label, _)| view! { <th scope="col" class="num">{label.clone()}</th> })
        .collect_view();
    let rows = KycStatus::ALL
        .iter()
        .enumerate()
        .map(|(index, status)| {
            let cells = stats
                .periods
                .iter()
                .map(|(_, counts)| {
                    view! { <td class="num">{counts.get(index).copied().unwrap_or(0)}</td> }
                })
                .collect_view();
            view! {
                <tr data-status=status.as_str()>
                    <th scope="row"><StatusBadge status=*status /></th>
                    {cells}
                </tr>
            }
        })
        .collect_view();
    let totals = stats
        .periods
        .iter()
        .map(|(_, counts)| view! { <td class="num"><strong>{counts.iter().sum::<i64>()}</strong></td> })
        .collect_view();
    let funnel = funnel_svg(&stats.funnel);
    // A return is the customer's claim: those still waiting for a verdict are not completed.
    let awaiting_text = match stats.awaiting_confirmation {
        0 => "No returned session is awaiting confirmation.".to_string(),
        1 => "1 returned session is awaiting confirmation (not counted as completed).".to_string(),
        n => format!("{n} returned sessions are awaiting confirmation (not counted as completed)."),
    };
    let per_day = per_day_svg(&stats.per_day);
    let expiring = stats.expiring;
    let not_answering = stats.not_answering;
    view! {
        <section class="panel">
            <h2>"KYC sessions"</h2>
            <div class="figures">
                <div class="table-wrap counts">
                    <table class="data" data-testid="status-counts">
                        <caption class="visually-hidden">"Sessions created, by current status"</caption>
                        <thead>
                            <tr>
                                <th scope="col">"Status"</th>
                                {heads}
                            </tr>
                        </thead>
                        <tbody>{rows}</tbody>
                        <tfoot>
                            <tr>
                                <th scope="row">"All"</th>
                                {totals}
                            </tr>
                        </tfoot>
                    </table>
                </div>
                <figure class="chart" data-testid="funnel-chart">
                    <figcaption>"Completion funnel, last 30 days"</figcaption>
                    <div class="chart-box" inner_html=funnel></div>
                    <p class="muted" data-testid="awaiting-confirmation">
                        {awaiting_text}
                    </p>
                </figure>
                <figure class="chart wide" data-testid="per-day-chart">
                    <figcaption>"Links created per day, last 14 days (UTC)"</figcaption>
                    <div class="chart-box scroll" inner_html=per_day></div>
                </figure>
            </div>
        </section>
        <section class="panel" data-testid="expiring">
            <h2>"Expiring in the next 10 minutes"</h2>
            <ExpiringList sessions=expiring channel=channel acts=acts />
        </section>
        <NotAnsweringList sessions=not_answering />
    }
}

/// Open sessions whose provider polls keep failing (shown only when there are some).
#[component]
fn NotAnsweringList(sessions: Vec<SessionSummary>) -> impl IntoView {
    if sessions.is_empty() {
        return ().into_any();
    }
    let items = sessions
        .into_iter()
        .map(|s| {
            view! {
                <li class="expiring-item" data-testid="not-answering-item">
                    <div class="expiring-head">
                        <a href=format!("/sessions/{}", s.public_id)>{s.customer_name.clone()}</a>
                        <StatusBadge status=s.status />
                        <span class="tag">{s.provider_alert.clone().unwrap_or_default()}</span>
                    </div>
                </li>
            }
        })
        .collect_view();
    view! {
        <section class="panel" data-testid="not-answering">
            <h2>"Provider not answering"</h2>
            <ul class="expiring-list">{items}</ul>
        </section>
    }
    .into_any()
}

#[component]
fn ExpiringList(
    sessions: Vec<SessionSummary>,
    channel: Option<String>,
    acts: bool,
) -> impl IntoView {
    if sessions.is_empty() {
        return view! { <p class="muted" data-testid="expiring-none">"No open link expires in the next 10 minutes."</p> }
            .into_any();
    }
    let items = sessions
        .into_iter()
        .map(|s| view! { <ExpiringItem session=s channel=channel.clone() acts=acts /> })
        .collect_view();
    view! { <ul class="expiring-list">{items}</ul> }.into_any()
}

#[component]
fn ExpiringItem(session: SessionSummary, channel: Option<String>, acts: bool) -> impl IntoView {
    let status = RwSignal::new(session.status);
    let resend = match (acts, channel) {
        (true, Some(channel)) => view! {
            <SendLinkButtons
                public_id=session.public_id.clone()
                channels=vec![channel]
                has_email=true
                on_sent=Callback::new(move |d: crate::types::SessionDetail| status.set(d.summary.status))
                prefix="resend"
            />
        }
        .into_any(),
        (true, None) => view! {
            <p class="muted">"No SMS or email sending is set up; open the session to copy the link."</p>
        }
        .into_any(),
        (false, _) => ().into_any(),
    };
    view! {
        <li class="expiring-item" data-testid="expiring-item">
            <div class="expiring-head">
                <a href=format!("/sessions/{}", session.public_id)>{session.customer_name.clone()}</a>
                <span class="muted">{session.phone_masked.clone()}</span>
                {move || view! { <StatusBadge status=status.get() /> }}
                <span class="muted">{format!("expires {}", split_when(&session.expires_or_ended).1)}</span>
            </div>
            {resend}
        </li>
    }
}

/// Horizontal bars, one per funnel step, with the count and the share of the first step.
pub fn funnel_svg(steps: &[(String, i64)]) -> String {
    let max = steps.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let first = steps.first().map(|(_, n)| *n).unwrap_or(0);
    let (label_w, bar_w, row_h) = (84.0, 170.0, 30.0);
    let width = label_w + bar_w + 86.0;
    let height = row_h * steps.len() as f64 + 4.0;
    let summary = steps
        .iter()
        .map(|(label, n)| format!("{label} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="bar-chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="Completion funnel over 30 days: {aria}"><title>Completion funnel over 30 days: {aria}</title>"#,
        aria = escape_markup(&summary)
    );
    for (index, (label, n)) in steps.iter().enumerate() {
        let y = 2.0 + row_h * index as f64;
        let w = if *n > 0 {
            (bar_w * *n as f64 / max as f64).max(2.0)
        } else {
            0.0
        };
        let share = if first > 0 {
            format!(" ({}%)", (*n as f64 * 100.0 / first as f64).round() as i64)
        } else {
            String::new()
        };
        let label = escape_markup(label);
        svg.push_str(&format!(
            r#"<g><title>{label}: {n}{share}</title><text x="0" y="{ty}" class="label">{label}</text><rect x="{label_w}" y="{ry}" width="{w:.1}" height="{h}" rx="3" class="bar step-{index}"></rect><text x="{vx:.1}" y="{ty}" class="value">{n}{share}</text></g>"#,
            ty = y + row_h / 2.0,
            ry = y + 4.0,
            h = row_h - 8.0,
            vx = label_w + w + 6.0,
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// Columns, one per day, with the count above each, the day of the month below, and the
/// month under the first day of each month shown.
pub fn per_day_svg(days: &[(String, i64)]) -> String {
    let max = days.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let (col_w, chart_h, top, bottom) = (24.0, 90.0, 18.0, 34.0);
    let width = col_w * days.len().max(1) as f64;
    let height = top + chart_h + bottom;
    let total: i64 = days.iter().map(|(_, n)| n).sum();
    let aria = format!(
        "Links created per day over the last {} days, {total} in all: {}",
        days.len(),
        days.iter()
            .map(|(d, n)| format!("{d} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="column-chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{aria}"><title>{aria}</title><line x1="0" y1="{base}" x2="{width}" y2="{base}" class="axis"></line>"#,
        aria = escape_markup(&aria),
        base = top + chart_h,
    );
    let mut last_month = "";
    for (index, (day, n)) in days.iter().enumerate() {
        let x = col_w * index as f64;
        let h = if *n > 0 {
            (chart_h * *n as f64 / max as f64).max(2.0)
        } else {
            0.0
        };
        let y = top + chart_h - h;
        let (month, day_of_month) = day.split_once('-').unwrap_or(("", day.as_str()));
        let month_label = if month != last_month {
            last_month = month;
            format!(
                r#"<text x="{:.1}" y="{:.1}" class="label month">{}</text>"#,
                x + col_w / 2.0,
                top + chart_h + 28.0,
                escape_markup(&month_name(month))
            )
        } else {
            String::new()
        };
        svg.push_str(&format!(
            r#"<g><title>{full}: {n}</title><rect x="{bx:.1}" y="{y:.1}" width="{bw:.1}" height="{h:.1}" rx="2" class="bar"></rect><text x="{cx:.1}" y="{vy:.1}" class="value">{n}</text><text x="{cx:.1}" y="{dy:.1}" class="label">{dd}</text>{month_label}</g>"#,
            full = escape_markup(day),
            dd = escape_markup(day_of_month),
            bx = x + 4.0,
            bw = col_w - 8.0,
            cx = x + col_w / 2.0,
            vy = y - 7.0,
            dy = top + chart_h + 12.0,
        ));
    }
    svg.push_str("</svg>");
    svg
}

fn month_name(month: &str) -> String {
    const NAMES: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    month
        .parse::<usize>()
        .ok()
        .and_then(|m| NAMES.get(m.wrapping_sub(1)))
        .map(|name| name.to_string())
        .unwrap_or_else(|| month.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_carry_text_and_titles() {
        let funnel = funnel_svg(&[
            ("Created".into(), 10),
            ("Sent".into(), 8),
            ("Returned".into(), 5),
            ("Completed".into(), 4),
        ]);
        assert!(funnel.contains(r#"role="img""#));
        assert!(funnel.contains("<title>Sent: 8 (80%)</title>"));
        assert!(funnel.contains(">Completed<"));
        let per_day = per_day_svg(&[("11-20".into(), 0), ("11-21".into(), 3)]);
        assert!(per_day.contains("3 in all"));
        assert!(per_day.contains("<title>11-21: 3</title>"));
        assert!(per_day.contains(">21<"));
        assert_eq!(per_day.matches(">Nov<").count(), 1);
        assert!(!funnel_svg(&[("<b>".into(), 0)]).contains("<b>"));
    }
}
