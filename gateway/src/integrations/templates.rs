//! Message templates, one file per kind and locale under `gateway/templates/`
//! (`zh-CN` and `en`), compiled into the binary. A file is a `Subject:` line, a
//! blank line and the body; `{name}` placeholders are filled in: `{code}`,
//! `{minutes}` and `{message}` (the plain English text the caller composed) for
//! codes, and each notice's own values (`{reason}`, `{device}`, `{country}`,
//! `{amount}`, `{id}`; see `notices`). An unknown kind falls back to `notice`.
//! The locale is the account's own (`AccountState::locale`, default `zh-CN`).

use okpay_engine::domain::Locale;

/// Every template of `kind`, in both locales, from `templates/<locale>/<kind>.txt`.
macro_rules! templates {
    ($($kind:literal),+ $(,)?) => {
        &[$(
            (Locale::ZhCn, $kind, include_str!(concat!("../../templates/zh-CN/", $kind, ".txt"))),
            (Locale::En, $kind, include_str!(concat!("../../templates/en/", $kind, ".txt"))),
        )+]
    };
}

/// (locale, kind, text). A new kind is one name here and one file per locale.
const TEMPLATES: &[(Locale, &str, &str)] = templates![
    "notice",
    "password_reset",
    "challenge",
    "security_code",
    "password_changed",
    "account_status",
    "account_frozen",
    "account_restricted",
    "account_active",
    "kyc_approved",
    "kyc_rejected",
    "new_device_login",
    "large_withdrawal",
    "security_changed",
];

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

fn find(locale: Locale, kind: &str) -> Option<&'static str> {
    TEMPLATES
        .iter()
        .find(|(l, k, _)| *l == locale && *k == kind)
        .map(|(_, _, t)| *t)
}

/// Whether `kind` has a template in `locale`.
pub fn has(locale: Locale, kind: &str) -> bool {
    find(locale, kind).is_some()
}

/// Renders `kind` in `locale` with a code, its lifetime and a composed message.
pub fn render(
    locale: Locale,
    kind: &str,
    code: Option<&str>,
    minutes: u64,
    message: &str,
) -> Rendered {
    render_vars(
        locale,
        kind,
        &[
            ("code", code.unwrap_or("").to_owned()),
            ("minutes", minutes.to_string()),
            ("message", message.to_owned()),
        ],
    )
}

/// Renders `kind` in `locale`, replacing each `{name}` of `vars`.
pub fn render_vars(locale: Locale, kind: &str, vars: &[(&str, String)]) -> Rendered {
    let template = find(locale, kind)
        .or_else(|| find(locale, "notice"))
        // unwrap: every locale has a `notice` template (checked by a test).
        .unwrap();
    // One pass over the template, so a value containing `{x}` is not filled in
    // again.
    let fill = |s: &str| {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open..];
            let var = after.find('}').and_then(|close| {
                let name = &after[1..close];
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (v, close))
            });
            match var {
                Some((value, close)) => {
                    out.push_str(value);
                    rest = &after[close + 1..];
                }
                None => {
                    out.push('{');
                    rest = &after[1..];
                }
            }
        }
        out.push_str(rest);
        out
    };
    let (subject, body) = match template.split_once("\n\n") {
        Some((head, body)) => (head.strip_prefix("Subject:").unwrap_or(head).trim(), body),
        None => ("OKPay", template),
    };
    Rendered {
        subject: fill(subject),
        body: fill(body.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_renders_in_both_locales_with_the_code() {
        for locale in Locale::ALL {
            for kind in [
                "password_reset",
                "challenge",
                "security_code",
                "password_changed",
                "notice",
                "account_status",
            ] {
                assert!(find(locale, kind).is_some(), "{locale:?}/{kind}");
                let r = render(locale, kind, Some("123456"), 10, "hello 123456");
                assert!(!r.subject.is_empty());
                assert!(!r.body.contains('{'), "{locale:?}/{kind}: {}", r.body);
                if kind != "password_changed" {
                    assert!(r.body.contains("123456"), "{locale:?}/{kind}: {}", r.body);
                }
            }
        }
        let r = render(Locale::ZhCn, "password_reset", Some("654321"), 10, "");
        assert_eq!(r.subject, "OKPay 密码重置验证码");
        assert!(r.body.contains("654321") && r.body.contains("10 分钟"));
        let r = render(Locale::En, "password_reset", Some("654321"), 10, "");
        assert!(r.subject.starts_with("Your OKPay"), "{}", r.subject);
        assert_eq!(
            render(Locale::ZhCn, "nope", None, 1, "x").subject,
            "OKPay 通知"
        );
    }

    #[test]
    fn every_template_file_is_listed_for_both_locales() {
        // A file added to one folder but not to `TEMPLATES` (or to only one
        // locale) would silently fall back to `notice`.
        for locale in Locale::ALL {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/templates/");
            let files = std::fs::read_dir(format!("{dir}{}", locale.code())).unwrap();
            for f in files {
                let name = f.unwrap().file_name().into_string().unwrap();
                let kind = name.strip_suffix(".txt").unwrap();
                for l in Locale::ALL {
                    assert!(has(l, kind), "{:?}/{kind} not listed", l);
                }
            }
        }
    }
}
