//! A JSON string field read without copying when it can be: borrowed from the
//! input when it has no escapes, owned when it has. serde's own `Cow<str>` only
//! borrows as a bare field marked `#[serde(borrow)]`; inside an `Option` it always
//! allocates, and the harness reads optional strings of every websocket frame and
//! every transfer answer, on the cores of the server it measures.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, Error, Visitor};

/// A string from a JSON document (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl Text<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Str;
        impl<'de> Visitor<'de> for Str {
            type Value = Cow<'de, str>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }

            fn visit_str<E: Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }

            fn visit_string<E: Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        deserializer.deserialize_str(Str).map(Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Doc<'a> {
        #[serde(borrow, default)]
        a: Option<Text<'a>>,
    }

    #[test]
    fn plain_strings_are_borrowed_and_escaped_ones_owned() {
        let d: Doc<'_> = serde_json::from_str(r#"{"a":"plain"}"#).unwrap();
        assert!(matches!(d.a, Some(Text(Cow::Borrowed("plain")))));
        let d: Doc<'_> = serde_json::from_str(r#"{"a":"e\u0073c\"aped"}"#).unwrap();
        let a = d.a.unwrap();
        assert!(matches!(a.0, Cow::Owned(_)));
        assert_eq!(a.as_str(), "esc\"aped");
        let d: Doc<'_> = serde_json::from_str("{}").unwrap();
        assert!(d.a.is_none());
        assert!(serde_json::from_str::<Doc<'_>>(r#"{"a":7}"#).is_err());
    }
}
