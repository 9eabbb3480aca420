//! The language an account's owner reads: which templates (`zh-CN` or `en`) the
//! gateway renders the account's mails and SMS from. Part of the account's
//! durable state, chosen at registration or later by the owner; accounts that
//! never chose (every account opened before the field existed too) read
//! Chinese, the product's first market.

use serde::{Deserialize, Serialize};

/// A supported locale. Stored (snapshots, events) by its variant index, so the
/// order below is frozen: new locales go at the end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Locale {
    /// Simplified Chinese, `zh-CN`: the default.
    #[default]
    ZhCn,
    /// English, `en`.
    En,
}

impl Locale {
    /// Every locale, the default first.
    pub const ALL: [Locale; 2] = [Locale::ZhCn, Locale::En];

    /// The BCP 47 tag the API and the template folders use.
    pub fn code(self) -> &'static str {
        match self {
            Locale::ZhCn => "zh-CN",
            Locale::En => "en",
        }
    }

    /// The locale of a BCP 47 tag, compared without regard to case (tags are
    /// case-insensitive); `None` for a locale without templates.
    pub fn parse(tag: &str) -> Option<Locale> {
        Locale::ALL
            .into_iter()
            .find(|l| l.code().eq_ignore_ascii_case(tag.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse_back_and_others_are_refused() {
        for l in Locale::ALL {
            assert_eq!(Locale::parse(l.code()), Some(l));
        }
        assert_eq!(Locale::parse("ZH-cn"), Some(Locale::ZhCn));
        assert_eq!(Locale::parse("EN"), Some(Locale::En));
        for bad in ["", "fr", "zh", "en-US", "zh_CN"] {
            assert_eq!(Locale::parse(bad), None, "{bad}");
        }
        assert_eq!(Locale::default(), Locale::ZhCn);
    }

    #[test]
    fn the_stored_index_is_pinned() {
        assert_eq!(postcard::to_stdvec(&Locale::ZhCn).unwrap(), [0]);
        assert_eq!(postcard::to_stdvec(&Locale::En).unwrap(), [1]);
    }
}
