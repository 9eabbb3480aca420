//! Message templates, one file per kind and locale under `gateway/templates/`
//! (`zh-CN` and `en`), compiled into the binary. A file is a `Subject:` line, a
//! blank line and the body; `{code}`, `{minutes}` and `{message}` (the plain
//! English text the caller composed) are filled in. An unknown kind falls back
//! to `notice`, an unknown locale to `zh-CN`.

/// Locales with templates; the first is the default.
pub const LOCALES: &[&str] = &["zh-CN", "en"];

const TEMPLATES: &[(&str, &str, &str)] = &[
    (
        "zh-CN",
        "account_status",
        include_str!("../../templates/zh-CN/account_status.txt"),
    ),
    (
        "en",
        "account_status",
        include_str!("../../templates/en/account_status.txt"),
    ),
    (
        "zh-CN",
        "password_reset",
        include_str!("../../templates/zh-CN/password_reset.txt"),
    ),
    (
        "zh-CN",
        "challenge",
        include_str!("../../templates/zh-CN/challenge.txt"),
    ),
    (
        "zh-CN",
        "password_changed",
        include_str!("../../templates/zh-CN/password_changed.txt"),
    ),
    (
        "zh-CN",
        "notice",
        include_str!("../../templates/zh-CN/notice.txt"),
    ),
    (
        "en",
        "password_reset",
        include_str!("../../templates/en/password_reset.txt"),
    ),
    (
        "en",
        "challenge",
        include_str!("../../templates/en/challenge.txt"),
    ),
    (
        "en",
        "password_changed",
        include_str!("../../templates/en/password_changed.txt"),
    ),
    (
        "en",
        "notice",
        include_str!("../../templates/en/notice.txt"),
    ),
];

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

fn find(locale: &str, kind: &str) -> Option<&'static str> {
    TEMPLATES
        .iter()
        .find(|(l, k, _)| *l == locale && *k == kind)
        .map(|(_, _, t)| *t)
}

/// Renders `kind` in `locale`.
pub fn render(
    locale: &str,
    kind: &str,
    code: Option<&str>,
    minutes: u64,
    message: &str,
) -> Rendered {
    let locale = if LOCALES.contains(&locale) {
        locale
    } else {
        LOCALES[0]
    };
    let template = find(locale, kind)
        .or_else(|| find(locale, "notice"))
        // unwrap: every locale has a `notice` template (checked by a test).
        .unwrap();
    let fill = |s: &str| {
        s.replace("{code}", code.unwrap_or(""))
            .replace("{minutes}", &minutes.to_string())
            .replace("{message}", message)
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
        for locale in LOCALES {
            for kind in [
                "password_reset",
                "challenge",
                "password_changed",
                "notice",
                "account_status",
            ] {
                assert!(find(locale, kind).is_some(), "{locale}/{kind}");
                let r = render(locale, kind, Some("123456"), 10, "hello 123456");
                assert!(!r.subject.is_empty());
                assert!(!r.body.contains('{'), "{locale}/{kind}: {}", r.body);
                if kind != "password_changed" {
                    assert!(r.body.contains("123456"), "{locale}/{kind}: {}", r.body);
                }
            }
        }
        let r = render("zh-CN", "password_reset", Some("654321"), 10, "");
        assert_eq!(r.subject, "OKPay 密码重置验证码");
        assert!(r.body.contains("654321") && r.body.contains("10 分钟"));
        assert_eq!(render("fr", "nope", None, 1, "x").subject, "OKPay 通知");
    }
}
