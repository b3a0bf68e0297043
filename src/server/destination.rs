//! Where a stored credential may send its secrets: the provider hosts each kind documents, the
//! hosts an operator allowed explicitly (`KYC_DESK_EXTRA_PROVIDER_HOSTS`), this machine only
//! with the sandbox on, and an SMTP password without TLS only to this machine. Also which
//! credentials belong to the sandbox, and why a stored credential is switched off now. Saving
//! and unlocking a credential both ask here, so a rule changed in the configuration applies to
//! credentials already stored.

use crate::credential_kinds::CredentialKind;
use crate::server::config::{Config, is_loopback};
use std::collections::BTreeMap;

/// The `saved_by` of the credentials the sandbox seeds.
pub const SANDBOX_SEED: &str = "sandbox seed";

/// The hosts a kind's provider documents (see `/work/shared/PROVIDERS.md`); SMTP has none.
pub fn documented_hosts(kind: CredentialKind) -> &'static [&'static str] {
    match kind {
        CredentialKind::MessageCentralEkyc => {
            &["ekyc.messagecentral.com", "ekyc-staging.messagecentral.com"]
        }
        CredentialKind::MessageCentralSms => &[
            "cpaas.messagecentral.com",
            "cpaas-staging.messagecentral.com",
        ],
        CredentialKind::EkoDigilocker => &["api.eko.in", "staging.eko.in"],
        // An identity provider is the company's own: any https issuer.
        CredentialKind::Smtp | CredentialKind::SingleSignOn => &[],
    }
}

/// The settings that say where or how a kind's secrets are sent: changing one is a rotation
/// (it needs the admin's password), since it could send the stored secrets elsewhere.
pub fn destination_fields(kind: CredentialKind) -> &'static [&'static str] {
    match kind {
        CredentialKind::Smtp => &["host", "port", "tls", "username"],
        CredentialKind::SingleSignOn => &["issuer"],
        _ => &["base_url"],
    }
}

/// Whether `new` changes where or how the secrets of `kind` are sent, compared with `old`.
pub fn changes_destination(
    kind: CredentialKind,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> bool {
    destination_fields(kind).iter().any(|field| {
        let value = |settings: &BTreeMap<String, String>| {
            settings
                .get(*field)
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        value(old) != value(new)
    })
}

/// What is wrong with where a credential of `kind` with `settings` would send its secrets:
/// the field at fault and a sentence. `has_password`: an SMTP password is stored or given.
pub fn destination_problem(
    config: &Config,
    kind: CredentialKind,
    settings: &BTreeMap<String, String>,
    has_password: bool,
) -> Option<(&'static str, String)> {
    let setting = |name: &str| {
        settings
            .get(name)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    if kind == CredentialKind::Smtp {
        let host = setting("host");
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let local = match bare.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(ip)) => is_loopback(Some(url::Host::<&str>::Ipv4(ip))),
            Ok(std::net::IpAddr::V6(ip)) => is_loopback(Some(url::Host::<&str>::Ipv6(ip))),
            Err(_) => is_loopback(Some(url::Host::Domain(bare))),
        };
        if setting("tls").eq_ignore_ascii_case("none") && has_password && !local {
            return Some((
                "tls",
                "A password is sent without TLS only to this machine; choose starttls or tls."
                    .into(),
            ));
        }
        return None;
    }
    if kind == CredentialKind::SingleSignOn {
        // The client secret goes to the issuer's token endpoint: https, or this machine (a
        // provider for development and tests); no allow-list, the company picks its own.
        return crate::credential_kinds::base_url_problem(&setting("issuer"))
            .map(|problem| ("issuer", problem));
    }
    let base = setting("base_url");
    let Ok(url) = url::Url::parse(&base) else {
        return Some((
            "base_url",
            "This is not a URL (expected https://host/path).".into(),
        ));
    };
    let Some(host) = url.host() else {
        return Some(("base_url", "This URL names no host.".into()));
    };
    let documented = documented_hosts(kind);
    let allowed = matches!(&host, url::Host::Domain(name) if documented.contains(name))
        || config
            .extra_provider_hosts
            .iter()
            .any(|extra| host_eq(extra, &host))
        || (config.sandbox && is_loopback(Some(host.clone())));
    if allowed && url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let local = if is_loopback(Some(host.clone())) {
        " This machine is allowed only with the sandbox on (KYC_DESK_SANDBOX)."
    } else {
        ""
    };
    Some((
        "base_url",
        format!(
            "{} is not a documented host of {} ({}); another host needs KYC_DESK_EXTRA_PROVIDER_HOSTS.{local}",
            host,
            kind.label(),
            documented.join(", ")
        ),
    ))
}

fn host_eq(allowed: &url::Host, given: &url::Host<&str>) -> bool {
    match (allowed, given) {
        (url::Host::Domain(a), url::Host::Domain(g)) => a.eq_ignore_ascii_case(g),
        (url::Host::Ipv4(a), url::Host::Ipv4(g)) => a == g,
        (url::Host::Ipv6(a), url::Host::Ipv6(g)) => a == g,
        _ => false,
    }
}

/// Whether a stored credential belongs to the built-in sandbox: seeded by it, or pointing at
/// its routes on this machine.
pub fn is_sandbox_credential(saved_by: &str, settings: &BTreeMap<String, String>) -> bool {
    saved_by == SANDBOX_SEED
        || settings
            .get("base_url")
            .and_then(|base| url::Url::parse(base.trim()).ok())
            .is_some_and(|url| is_loopback(url.host()) && url.path().starts_with("/sandbox/"))
}

/// Why a stored credential may not be used now, in words for the Credentials page; `None`
/// when it may. A sandbox credential is off while the sandbox is; any credential is off when
/// its destination breaks the rules above.
pub fn switched_off(
    config: &Config,
    kind: CredentialKind,
    saved_by: &str,
    settings: &BTreeMap<String, String>,
    has_password: bool,
) -> Option<String> {
    if is_sandbox_credential(saved_by, settings) && !config.sandbox {
        return Some(
            "Switched off: this is a sandbox credential and the sandbox is off (KYC_DESK_SANDBOX)."
                .into(),
        );
    }
    destination_problem(config, kind, settings, has_password)
        .map(|(_, problem)| format!("Switched off: {problem}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned()).unwrap()
    }

    fn base(url: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("base_url".to_string(), url.to_string())])
    }

    #[test]
    fn provider_hosts_are_the_documented_ones() {
        let plain = config(&[]);
        let mc = CredentialKind::MessageCentralEkyc;
        assert!(
            destination_problem(&plain, mc, &base("https://ekyc.messagecentral.com"), false)
                .is_none()
        );
        assert!(
            destination_problem(
                &plain,
                mc,
                &base("https://EKYC-staging.messagecentral.com/x"),
                false
            )
            .is_none()
        );
        for refused in [
            "https://attacker.example",
            "https://ekyc.messagecentral.com.attacker.example",
            "https://ekyc.messagecentral.com@attacker.example",
            "https://user:pw@ekyc.messagecentral.com",
            "https://cpaas.messagecentral.com",
            "https://api.eko.in",
            "http://127.0.0.1:3000/sandbox/message-central",
            "http://[::1]:3000",
            "http://[::ffff:127.0.0.1]:3000",
            "https://93.184.216.34",
        ] {
            let problem = destination_problem(&plain, mc, &base(refused), false);
            assert_eq!(problem.as_ref().map(|p| p.0), Some("base_url"), "{refused}");
        }
        let eko = CredentialKind::EkoDigilocker;
        assert!(
            destination_problem(&plain, eko, &base("https://api.eko.in/ekoicici/v3"), false)
                .is_none()
        );
        assert!(
            destination_problem(
                &plain,
                eko,
                &base("https://api.eko.in:25002/ekoicici/v3"),
                false
            )
            .is_none()
        );
    }

    #[test]
    fn loopback_needs_the_sandbox_and_others_the_allow_list() {
        let mc = CredentialKind::MessageCentralSms;
        let sandbox = config(&[("KYC_DESK_SANDBOX", "true")]);
        assert!(destination_problem(&sandbox, mc, &base("http://127.0.0.1:9/x"), false).is_none());
        assert!(destination_problem(&sandbox, mc, &base("http://localhost:9/x"), false).is_none());
        assert!(destination_problem(&sandbox, mc, &base("https://10.0.0.5"), false).is_some());
        let proxy = config(&[(
            "KYC_DESK_EXTRA_PROVIDER_HOSTS",
            "proxy.example.com,10.0.0.5",
        )]);
        assert!(
            destination_problem(&proxy, mc, &base("https://Proxy.example.com/mc"), false).is_none()
        );
        assert!(destination_problem(&proxy, mc, &base("https://10.0.0.5/mc"), false).is_none());
        assert!(destination_problem(&proxy, mc, &base("https://10.0.0.6/mc"), false).is_some());
        assert!(destination_problem(&proxy, mc, &base("http://127.0.0.1:9/x"), false).is_some());
    }

    #[test]
    fn smtp_without_tls_sends_a_password_only_locally() {
        let plain = config(&[]);
        let smtp = |host: &str, tls: &str| {
            BTreeMap::from([
                ("host".to_string(), host.to_string()),
                ("tls".to_string(), tls.to_string()),
            ])
        };
        let kind = CredentialKind::Smtp;
        assert_eq!(
            destination_problem(&plain, kind, &smtp("mail.example.com", "none"), true).map(|p| p.0),
            Some("tls")
        );
        assert!(
            destination_problem(&plain, kind, &smtp("mail.example.com", "none"), false).is_none()
        );
        assert!(
            destination_problem(&plain, kind, &smtp("mail.example.com", "starttls"), true)
                .is_none()
        );
        assert!(destination_problem(&plain, kind, &smtp("127.0.0.1", "none"), true).is_none());
        assert!(destination_problem(&plain, kind, &smtp("localhost", "none"), true).is_none());
    }

    #[test]
    fn sandbox_credentials_are_off_without_the_sandbox() {
        let off = config(&[("KYC_DESK_EXTRA_PROVIDER_HOSTS", "127.0.0.1")]);
        let on = config(&[("KYC_DESK_SANDBOX", "true")]);
        let seeded = base("http://127.0.0.1:3000/sandbox/message-central");
        let kind = CredentialKind::MessageCentralSms;
        assert!(switched_off(&off, kind, SANDBOX_SEED, &seeded, true).is_some());
        assert!(switched_off(&off, kind, "admin@example.com", &seeded, true).is_some());
        assert!(switched_off(&on, kind, SANDBOX_SEED, &seeded, true).is_none());
        let fake = base("http://127.0.0.1:4000/");
        assert!(switched_off(&off, kind, "admin@example.com", &fake, true).is_none());
    }
}
