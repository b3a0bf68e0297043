//! The admins' customer texts page: what customers read from KYC Desk — the email that carries
//! a link, the reminders, and the privacy notice shown before consent — each edited and saved
//! on its own (saving asks the admin to confirm it is them).

use super::step_up::ActionFailure;
use super::{Guarded, described_by, field_message, page_resource, result_of};
use crate::api::links::{
    SaveEmailTemplate, SaveReminderTemplates, email_template, get_reminder_templates,
};
use crate::api::notice::{SavePrivacyNotice, get_privacy_notice};
use crate::types::{AppError, NoticeTexts, PrivacyNotice, ReminderTemplates, ReminderTexts};
use leptos::prelude::*;
use leptos_meta::Title;

/// The customer texts page (admins only).
#[component]
pub fn TextsPage() -> impl IntoView {
    view! {
        <Title text="Customer texts" />
        <Guarded path="/texts">
            <section class="panel">
                <h1>"Customer texts"</h1>
                <p class="muted">
                    "What customers receive and read from KYC Desk: the email that carries their link, the reminders, and the privacy notice on their link's page. "
                    "Each part is saved on its own."
                </p>
            </section>
            <EmailTemplateEditor />
            <ReminderTemplateEditor />
            <PrivacyNoticeEditor />
        </Guarded>
    }
}

/// The email that carries links to customers: subject and body with placeholders.
#[component]
fn EmailTemplateEditor() -> impl IntoView {
    let save = ServerAction::<SaveEmailTemplate>::new();
    let value = result_of(save);
    let pending = save.pending();
    let template = page_resource(|| (), |_| email_template());
    let body_error = field_message(value, "body");
    view! {
        <section class="panel" data-testid="email-template">
            <h2>"Link email"</h2>
            <p class="muted">
                "The message a customer receives when a link is sent by email (sent as plain text and as HTML). "
                "Placeholders: {name} (customer), {link} (required), {expires} (link expiry), {company} (the company name of the Message Central eKYC credential)."
            </p>
            <Suspense fallback=|| view! { <p class="loading">"Loading the template…"</p> }>
                {move || Suspend::new(async move {
                    match template.await {
                        Ok((subject, body)) => view! {
                            <ActionForm action=save attr:data-testid="email-template-form">
                                <div class="field" class:invalid=move || field_message(value, "subject").get().is_some()>
                                    <label for="template-subject">"Subject"</label>
                                    <input id="template-subject" name="subject" type="text" maxlength=200 required value=subject />
                                    {move || field_message(value, "subject").get().map(|m| view! { <p class="field-error">{m}</p> })}
                                </div>
                                <div class="field" class:invalid=move || body_error.get().is_some()>
                                    <label for="template-body">"Message"</label>
                                    <textarea id="template-body" name="body" rows=12 maxlength=5000 required>{textarea_text(body)}</textarea>
                                    {move || body_error.get().map(|m| view! { <p class="field-error">{m}</p> })}
                                </div>
                                <ActionFailure result=value again="Press “Save template” again." />
                                {move || matches!(value.get(), Some(Ok(_))).then(|| view! {
                                    <p class="banner success" role="status" data-testid="template-saved">"Template saved. New emails use it from now on."</p>
                                })}
                                <button type="submit" class="primary" disabled=move || pending.get()>
                                    {move || if pending.get() { "Saving…" } else { "Save template" }}
                                </button>
                            </ActionForm>
                        }.into_any(),
                        Err(error) => view! { <p class="banner error">{error.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// The longest reminder SMS the browser lets through: the server's own limit
/// (`reminder_templates::SMS_MAX_CHARS`, in server-only code; a test keeps the two equal).
const REMINDER_SMS_MAX: usize = 500;

/// The reminders sent to customers who have not started (SMS/WhatsApp and email), in English
/// and Hindi; the customer gets the language they consented in, else English.
#[component]
fn ReminderTemplateEditor() -> impl IntoView {
    let save = ServerAction::<SaveReminderTemplates>::new();
    let value = result_of(save);
    let pending = save.pending();
    let templates = page_resource(|| (), |_| get_reminder_templates());
    view! {
        <section class="panel reminder-editor" data-testid="reminder-templates">
            <h2>"Reminders"</h2>
            <p class="muted">
                "What a customer receives when their link was sent and they have not started: by the channel the link went by, in the language they chose on the link's page (English until they chose). "
                "Placeholders: {name}, {link} (required), {expires}, {company}. "
                "In India an SMS is delivered only if its text matches a DLT template registered for your sender ID: register each SMS text below as it stands, every placeholder as a variable."
            </p>
            <Suspense fallback=|| view! { <p class="loading">"Loading the reminders…"</p> }>
                {move || Suspend::new(async move {
                    match templates.await {
                        Ok(loaded) => {
                            let first = format!("Saved by {} {}", loaded.updated_by, loaded.updated_at);
                            view! {
                                <p data-testid="reminder-templates-saved-by">
                                    {move || match value.get() {
                                        Some(Ok(saved)) => format!("Saved by {} {}", saved.updated_by, saved.updated_at),
                                        _ => first.clone(),
                                    }}
                                </p>
                                <ActionForm action=save attr:data-testid="reminder-templates-form">
                                    <ReminderLanguage value language="en" legend="English" texts=loaded.en />
                                    <ReminderLanguage value language="hi" legend="हिन्दी" texts=loaded.hi />
                                    <ActionFailure result=value again="Press “Save reminders” again." />
                                    {move || matches!(value.get(), Some(Ok(_))).then(|| view! {
                                        <p class="banner success" role="status" data-testid="reminder-templates-ok">"Reminders saved. The next reminders use them."</p>
                                    })}
                                    <button type="submit" class="primary" data-testid="reminder-templates-save" disabled=move || pending.get()>
                                        {move || if pending.get() { "Saving…" } else { "Save reminders" }}
                                    </button>
                                </ActionForm>
                            }.into_any()
                        }
                        Err(error) => view! { <p class="banner error">{error.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// One language's reminder texts (`templates[hi][sms]` in, `hi.sms` back).
#[component]
fn ReminderLanguage(
    value: Signal<Option<Result<ReminderTemplates, AppError>>>,
    language: &'static str,
    legend: &'static str,
    texts: ReminderTexts,
) -> impl IntoView {
    let parts = vec![
        TextPart::area(
            "sms",
            "SMS and WhatsApp text",
            texts.sms,
            4,
            REMINDER_SMS_MAX,
        ),
        TextPart::line("email_subject", "Email subject", texts.email_subject, 200),
        TextPart::area("email_body", "Email message", texts.email_body, 8, 5000),
    ];
    view! { <LanguageFields value form="templates" ids="reminder" language legend parts /> }
}

/// One text box of a per-language form: its name in the form, label, text, and size.
struct TextPart {
    part: &'static str,
    label: &'static str,
    text: String,
    /// 1 for a one-line input, else a textarea of so many rows.
    rows: u32,
    max: usize,
}

impl TextPart {
    fn line(part: &'static str, label: &'static str, text: String, max: usize) -> Self {
        TextPart {
            part,
            label,
            text,
            rows: 1,
            max,
        }
    }

    fn area(part: &'static str, label: &'static str, text: String, rows: u32, max: usize) -> Self {
        TextPart {
            part,
            label,
            text,
            rows,
            max,
        }
    }
}

/// The text boxes of one language in a form that the server reads as `{form}[{language}][part]`
/// and answers with field errors named `{language}.{part}`, each shown under its box (ids
/// `{ids}-{language}-{part}`).
#[component]
fn LanguageFields<T: Clone + Send + Sync + 'static>(
    value: Signal<Option<Result<T, AppError>>>,
    form: &'static str,
    ids: &'static str,
    language: &'static str,
    legend: &'static str,
    parts: Vec<TextPart>,
) -> impl IntoView {
    let fields = parts
        .into_iter()
        .map(|TextPart { part, label, text, rows, max }| {
            let id = format!("{ids}-{language}-{part}");
            let error_id = format!("{id}-error");
            let field = format!("{language}.{part}");
            let error = Signal::derive(move || crate::types::field_error(&value.get(), &field));
            let name = format!("{form}[{language}][{part}]");
            let described = described_by(None, error_id.clone(), error);
            let invalid = move || error.get().is_some().to_string();
            let control = if rows == 1 {
                view! {
                    <input id=id.clone() name=name data-testid=id.clone() lang=language type="text"
                        maxlength=max required value=text aria-invalid=invalid aria-describedby=described />
                }
                .into_any()
            } else {
                view! {
                    <textarea id=id.clone() name=name data-testid=id.clone() lang=language rows=rows
                        maxlength=max required aria-invalid=invalid aria-describedby=described
                    >{textarea_text(text)}</textarea>
                }
                .into_any()
            };
            view! {
                <div class="field" class:invalid=move || error.get().is_some()>
                    <label for=id>{label}</label>
                    {control}
                    {move || error.get().map(|m| view! { <p class="field-error" id=error_id.clone()>{m}</p> })}
                </div>
            }
        })
        .collect_view();
    view! {
        <fieldset>
            <legend lang=language>{legend}</legend>
            {fields}
        </fieldset>
    }
}

/// The longest part of the notice the browser lets through: the server's own limit
/// (`MAX_SECTION_CHARS`, in server-only code; a test keeps the two equal).
const NOTICE_PART_MAX: usize = 2000;

/// The customer's privacy notice (India's DPDP Act) in English and Hindi. Saving publishes
/// the next version; a version is never changed, so a consent keeps naming what was read.
#[component]
fn PrivacyNoticeEditor() -> impl IntoView {
    let save = ServerAction::<SavePrivacyNotice>::new();
    let value = result_of(save);
    let pending = save.pending();
    let notice = page_resource(|| (), |_| get_privacy_notice());
    // The version saved here last (number, by, when). The page's copy is not fetched again
    // after a save, so what the admin typed stays in the form; only this line moves on.
    let saved = RwSignal::new(None::<(i64, String, String)>);
    Effect::new(move |_| {
        if let Some(Ok(notice)) = value.get() {
            saved.set(Some((notice.version, notice.created_by, notice.created_at)));
        }
    });
    view! {
        <section class="panel notice-editor" data-testid="notice-editor">
            <h2>"Customer privacy notice"</h2>
            <p class="muted">
                "What a customer reads on their link's page before consenting, in English and Hindi; the law asks for every part. "
                "Write {company} where your company's name belongs: it is filled with the company name of the Message Central eKYC credential (“our team” while none is set)."
            </p>
            <Suspense fallback=|| view! { <p class="loading">"Loading the notice…"</p> }>
                {move || Suspend::new(async move {
                    match notice.await {
                        Ok(loaded) => {
                            let first = (loaded.version, loaded.created_by, loaded.created_at);
                            let current = Signal::derive(move || saved.get().unwrap_or_else(|| first.clone()));
                            view! {
                                <p data-testid="notice-version">
                                    {move || current.with(|(version, by, at)| format!("Version {version} · saved by {by} · {at}"))}
                                </p>
                                <p class="hint">
                                    {move || format!(
                                        "Saving publishes version {}; customers who consented keep the version they saw. It asks you to confirm it is you if you have not in the last few minutes.",
                                        current.with(|(version, _, _)| version + 1)
                                    )}
                                </p>
                                <ActionForm action=save attr:data-testid="notice-form">
                                    <NoticeLanguage value language="en" legend="English" texts=loaded.en />
                                    <NoticeLanguage value language="hi" legend="हिन्दी" texts=loaded.hi />
                                    <ActionFailure result=value again="Press “Save notice” again." />
                                    {move || match value.get() {
                                        Some(Ok(saved)) => Some(view! {
                                            <p class="banner success" role="status" data-testid="notice-saved">
                                                {format!("Version {} published. Customers opening a link see it from now on.", saved.version)}
                                            </p>
                                        }),
                                        _ => None,
                                    }}
                                    <button type="submit" class="primary" data-testid="notice-save" disabled=move || pending.get()>
                                        {move || if pending.get() { "Saving…" } else { "Save notice" }}
                                    </button>
                                </ActionForm>
                            }.into_any()
                        }
                        Err(error) => view! { <p class="banner error">{error.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// The five parts of the notice in one language (`notice[en][purpose]` in, `en.purpose` back).
#[component]
fn NoticeLanguage(
    value: Signal<Option<Result<PrivacyNotice, AppError>>>,
    language: &'static str,
    legend: &'static str,
    texts: NoticeTexts,
) -> impl IntoView {
    let part = |part, label, text| TextPart::area(part, label, text, 4, NOTICE_PART_MAX);
    let parts = vec![
        part("purpose", "Why we ask", texts.purpose),
        part("data_items", "What is collected", texts.data_items),
        part("retention", "How long it is kept", texts.retention),
        part("withdrawal", "Withdrawing consent", texts.withdrawal),
        part("complaint", "Concerns and complaints", texts.complaint),
    ];
    view! { <LanguageFields value form="notice" ids="notice" language legend parts /> }
}

/// The text inside a `<textarea>`. Leptos writes a textarea's children into server-rendered
/// HTML without escaping them (as it does for `<script>`), so a stored `</textarea>` would end
/// the element there: escape it on the server. In the browser the text becomes a DOM text
/// node as it is.
fn textarea_text(text: String) -> String {
    if cfg!(feature = "ssr") {
        crate::markup::escape_markup(&text)
    } else {
        text
    }
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    #[test]
    fn the_notice_form_lets_through_what_the_server_takes() {
        assert_eq!(
            super::NOTICE_PART_MAX,
            crate::server::customer::notice::MAX_SECTION_CHARS
        );
        assert_eq!(
            super::REMINDER_SMS_MAX,
            crate::server::links::reminder_templates::SMS_MAX_CHARS
        );
    }

    /// The names are the server's contract (`notice[hi][retention]` in, `hi.retention` back).
    #[test]
    fn a_part_is_named_as_the_server_reads_it_and_shows_its_error() {
        use super::*;
        let texts = NoticeTexts {
            retention: "</textarea><b>".into(),
            ..NoticeTexts::default()
        };
        let result = Some(Err(AppError::field("hi.retention", "Write this part.")));
        // Signals live in an owner's arena, as on a rendered page.
        let html = Owner::new().with(|| {
            view! { <NoticeLanguage value=Signal::stored(result) language="hi" legend="हिन्दी" texts /> }
            .to_html()
        });
        assert!(html.contains(r#"name="notice[hi][retention]""#), "{html}");
        assert!(
            html.contains(r#"<label for="notice-hi-retention">How long it is kept</label>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"aria-invalid="true" aria-describedby="notice-hi-retention-error""#),
            "{html}"
        );
        assert!(
            html.contains(
                r#"id="notice-hi-retention-error" class="field-error">Write this part.</p>"#
            ),
            "{html}"
        );
        assert!(
            html.contains("&lt;/textarea&gt;&lt;b&gt;</textarea>"),
            "{html}"
        );
        assert_eq!(html.matches(r#"aria-invalid="false""#).count(), 4, "{html}");
    }
}
