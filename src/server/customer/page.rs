//! The customer's page as plain HTML: no script, no WebAssembly, one small inline style sheet,
//! so it works on a small phone, on a slow connection and without JavaScript. Every text comes
//! from the language tables ([`super::texts`]) or the admin's notice; everything inserted is
//! escaped.

use super::texts::{Language, Texts};
use crate::markup::escape_markup as esc;
use crate::types::NoticeTexts;

/// The page's style: readable type, large targets, visible focus, contrast above 4.5:1.
const STYLE: &str = "body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans','Noto Sans Devanagari',sans-serif;color:#1b1f24;background:#f5f6f8}\
main{max-width:36rem;margin:0 auto;padding:1rem 1.25rem 3rem;background:#fff;min-height:100vh;box-sizing:border-box}\
h1{font-size:1.45rem;line-height:1.3;margin:.5rem 0 1rem}h2{font-size:1.1rem;margin:1.5rem 0 .5rem}h3{font-size:1rem;margin:1rem 0 .25rem}\
p{margin:.5rem 0}nav{display:flex;justify-content:flex-end;gap:.75rem;font-size:.95rem}\
a{color:#0b4fa8}a:focus,button:focus,input:focus{outline:3px solid #0b4fa8;outline-offset:2px}\
.notice{border:1px solid #c9ced6;border-radius:.5rem;padding:.25rem 1rem .75rem;background:#fafbfc}\
.consent{display:flex;gap:.75rem;align-items:flex-start;margin:1.25rem 0;font-weight:600}.consent input{width:1.5rem;height:1.5rem;margin:.1rem 0 0;flex:none}\
button{font:inherit;font-weight:700;border:0;border-radius:.5rem;padding:.8rem 1.25rem;background:#0b4fa8;color:#fff;width:100%;cursor:pointer;margin:.5rem 0}\
button.secondary{background:#fff;color:#0b4fa8;border:2px solid #0b4fa8}\
.error{color:#a3120f;font-weight:600;margin:.25rem 0}.ok{color:#1d6b2f;font-weight:600}\
label.field{display:block;font-weight:600;margin-top:1rem}input.code{font:inherit;font-size:1.3rem;letter-spacing:.3em;width:9ch;padding:.5rem;border:2px solid #5a6472;border-radius:.4rem}\
.muted{color:#4a5360;font-size:.95rem}footer{margin-top:2rem;font-size:.95rem}";

/// Where the response's CSP nonce goes (the policy allows no other inline style).
pub const NONCE_MARKER: &str = "KYC-DESK-STYLE-NONCE";

/// A whole customer page: the language switch (links to the same address in each other
/// language), a heading and the body markup.
///
/// The style element carries [`NONCE_MARKER`] as its nonce, and comes before anything taken
/// from data: the HTTP side puts the response's CSP nonce in the marker's first place.
pub fn document(language: Language, here: &str, heading: &str, body: &str) -> String {
    let texts = language.texts();
    let switch: String = Language::ALL
        .into_iter()
        .filter(|other| *other != language)
        .map(|other| {
            format!(
                "<a href=\"{}?lang={}\" lang=\"{}\" hreflang=\"{}\" data-testid=\"lang-{}\">{}</a>",
                esc(here),
                other.code(),
                other.code(),
                other.code(),
                other.code(),
                esc(other.texts().name)
            )
        })
        .collect();
    format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\">\
         <style nonce=\"{NONCE_MARKER}\">{STYLE}</style><title>{title}</title></head><body>\
         <main data-testid=\"customer-page\"><nav aria-label=\"{switch_name}\">{switch}</nav>\
         <h1>{title}</h1>{body}</main></body></html>",
        lang = language.code(),
        title = esc(heading),
        switch_name = esc(texts.language_switch),
    )
}

/// `text` with `{name}` placeholders filled (values escaped), as markup.
pub fn fill(text: &str, values: &[(&str, &str)]) -> String {
    let mut out = esc(text);
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), &esc(value));
    }
    out
}

/// What the customer's main page shows.
pub struct StartPage<'a> {
    /// The language.
    pub language: Language,
    /// The link's address (`/v/{code}`).
    pub here: &'a str,
    /// The company's name.
    pub company: &'a str,
    /// The last four digits of the session's mobile number.
    pub digits: &'a str,
    /// Message Central or DigiLocker.
    pub digilocker: bool,
    /// Documents DigiLocker will share.
    pub documents: &'a str,
    /// Until when the link works (text).
    pub expires: &'a str,
    /// The notice's version and texts in this language.
    pub notice_version: i64,
    /// The notice texts.
    pub notice: &'a NoticeTexts,
    /// When the customer consented, if they did.
    pub consented_at: Option<&'a str>,
    /// The one-time code step, when the link asks one and it is not passed yet.
    pub code_step: Option<CodeStep>,
    /// A message above the Start button (an error of the last attempt).
    pub error: Option<String>,
    /// A confirmation above the form (a code was sent).
    pub info: Option<String>,
    /// The consent box was ticked on the form that led here (kept ticked).
    pub consent_ticked: bool,
}

/// Where the one-time code step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeStep {
    /// No code was sent yet (or it expired): a "Send me a code" button.
    NotSent,
    /// A code was sent: the field to type it.
    Sent,
}

/// The main page: who asks, what happens, the notice, consent and Start.
pub fn start_page(page: &StartPage<'_>) -> String {
    let t: &Texts = page.language.texts();
    let company = [("company", page.company)];
    let mut body = String::new();
    body.push_str(&format!(
        "<p data-testid=\"customer-intro\">{}</p>",
        fill(
            t.intro,
            &[("company", page.company), ("digits", page.digits)]
        )
    ));
    body.push_str(&format!("<h2>{}</h2>", esc(t.what_heading)));
    let what = if page.digilocker {
        fill(t.what_digilocker, &[("documents", page.documents)])
    } else {
        esc(t.what_message_central)
    };
    let minutes = if page.digilocker { "3" } else { "5" };
    body.push_str(&format!(
        "<p>{what}</p><p>{}</p><p class=\"muted\">{}</p>",
        fill(t.duration, &[("minutes", minutes)]),
        fill(t.valid_until, &[("expires", page.expires)])
    ));
    body.push_str(&format!(
        "<section class=\"notice\" aria-labelledby=\"notice-heading\" data-testid=\"privacy-notice\"><h2 id=\"notice-heading\">{}</h2>",
        fill(
            t.notice_heading,
            &[("version", &page.notice_version.to_string())]
        )
    ));
    for (heading, text) in [
        (t.notice_purpose, &page.notice.purpose),
        (t.notice_data_items, &page.notice.data_items),
        (t.notice_retention, &page.notice.retention),
        (t.notice_withdrawal, &page.notice.withdrawal),
        (t.notice_complaint, &page.notice.complaint),
    ] {
        let text = fill(text, &company).replace('\n', "<br>");
        body.push_str(&format!("<h3>{}</h3><p>{text}</p>", esc(heading)));
    }
    body.push_str("</section>");
    if let Some(info) = &page.info {
        body.push_str(&format!(
            "<p class=\"ok\" role=\"status\" data-testid=\"customer-info\">{}</p>",
            esc(info)
        ));
    }
    let error = page
        .error
        .as_ref()
        .map(|e| {
            format!(
                "<p class=\"error\" id=\"start-error\" role=\"alert\" data-testid=\"customer-error\">{}</p>",
                esc(e)
            )
        })
        .unwrap_or_default();
    let described = if page.error.is_some() {
        " aria-describedby=\"start-error\""
    } else {
        ""
    };
    let action = format!("{}/start", page.here);
    body.push_str(&format!(
        "<form method=\"post\" action=\"{}\" data-testid=\"start-form\"><input type=\"hidden\" name=\"lang\" value=\"{}\"><input type=\"hidden\" name=\"notice_version\" value=\"{}\">",
        esc(&action),
        page.language.code(),
        page.notice_version
    ));
    match page.consented_at {
        Some(at) => body.push_str(&format!(
            "<p class=\"ok\" data-testid=\"consented\">{}</p><input type=\"hidden\" name=\"consent\" value=\"on\">",
            fill(t.consented_already, &[("at", at)])
        )),
        None => body.push_str(&format!(
            "<label class=\"consent\"><input type=\"checkbox\" name=\"consent\" value=\"on\" required data-testid=\"consent-box\"{described}{}><span>{}</span></label>",
            if page.consent_ticked { " checked" } else { "" },
            fill(t.consent_label, &company)
        )),
    }
    match page.code_step {
        Some(CodeStep::Sent) => body.push_str(&format!(
            "<label class=\"field\" for=\"code\">{}</label><input class=\"code\" id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9]{{6}}\" maxlength=\"6\" required data-testid=\"code-input\"{described}>",
            esc(t.code_label)
        )),
        Some(CodeStep::NotSent) => body.push_str(&format!(
            "<p>{}</p>",
            fill(t.code_intro, &[("digits", page.digits)])
        )),
        None => {}
    }
    body.push_str(&error);
    if page.code_step == Some(CodeStep::NotSent) {
        // The consent box goes with the request for a code: the code is sent only to a
        // customer who consented.
        body.push_str(&format!(
            "<button type=\"submit\" formaction=\"{}\" data-testid=\"send-code\">{}</button>",
            esc(&format!("{}/code", page.here)),
            esc(t.code_send)
        ));
    } else {
        body.push_str(&format!(
            "<button type=\"submit\" data-testid=\"start\">{}</button>",
            esc(t.start)
        ));
    }
    if page.code_step == Some(CodeStep::Sent) {
        body.push_str(&format!(
            "<button type=\"submit\" class=\"secondary\" formaction=\"{}\" formnovalidate data-testid=\"send-code\">{}</button>",
            esc(&format!("{}/code", page.here)),
            esc(t.code_send)
        ));
    }
    body.push_str("</form>");
    body.push_str(&format!(
        "<footer><a href=\"{}/withdraw\" data-testid=\"withdraw-link\">{}</a></footer>",
        esc(page.here),
        esc(t.withdraw_link)
    ));
    document(
        page.language,
        page.here,
        &fill_plain(t.title, &company),
        &body,
    )
}

/// `text` with placeholders filled, as plain text (for the title, escaped by [`document`]).
pub fn fill_plain(text: &str, values: &[(&str, &str)]) -> String {
    let mut out = text.to_string();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

/// The withdraw confirmation.
pub fn withdraw_page(language: Language, here: &str, company: &str) -> String {
    let t = language.texts();
    let body = format!(
        "<p>{}</p><form method=\"post\" action=\"{}/withdraw\"><input type=\"hidden\" name=\"lang\" value=\"{}\"><button type=\"submit\" data-testid=\"withdraw-confirm\">{}</button></form><p><a href=\"{}\">{}</a></p>",
        fill(t.withdraw_text, &[("company", company)]),
        esc(here),
        language.code(),
        esc(t.withdraw_button),
        esc(here),
        esc(t.withdraw_back)
    );
    document(
        language,
        &format!("{here}/withdraw"),
        t.withdraw_heading,
        &body,
    )
}

/// A page with a heading and one paragraph (an end, an error), and optionally a retry form.
pub fn message_page(
    language: Language,
    here: &str,
    heading: &str,
    text: &str,
    retry: Option<&str>,
) -> String {
    let t = language.texts();
    let mut body = format!("<p data-testid=\"customer-message\">{text}</p>");
    if let Some(action) = retry {
        body.push_str(&format!(
            "<form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"lang\" value=\"{}\"><input type=\"hidden\" name=\"consent\" value=\"on\"><button type=\"submit\" data-testid=\"retry\">{}</button></form>",
            esc(action),
            language.code(),
            esc(t.retry)
        ));
    }
    document(language, here, heading, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_values_are_escaped_and_the_page_has_no_script() {
        let notice = NoticeTexts {
            purpose: "For <b>{company}</b>".into(),
            ..NoticeTexts::default()
        };
        let html = start_page(&StartPage {
            language: Language::Hi,
            here: "/v/abc",
            company: "A&B <script>",
            digits: "3210",
            digilocker: true,
            documents: "AADHAAR",
            expires: "2026-12-01 10:00 UTC",
            notice_version: 2,
            notice: &notice,
            consented_at: None,
            code_step: None,
            error: Some("<oops>".into()),
            info: None,
            consent_ticked: true,
        });
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("A&amp;B &lt;script&gt;"));
        assert!(html.contains("For &lt;b&gt;A&amp;B &lt;script&gt;&lt;/b&gt;"));
        assert!(html.contains("&lt;oops&gt;"));
        assert!(html.contains("lang=\"hi\""));
        assert!(html.contains("?lang=en"));
        assert!(html.contains("3210"));
        assert!(
            html.contains("data-testid=\"consent-box\" aria-describedby=\"start-error\" checked")
        );
        assert!(html.len() < 30 * 1024, "{} bytes", html.len());
    }
}
