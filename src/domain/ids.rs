//! Validated identifiers. Each is a string newtype that can only be built
//! through `parse`, so a key in a store never contains a separator, a
//! control character or an unbounded amount of text.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {problem}")]
pub struct IdError {
    pub what: &'static str,
    pub problem: String,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr, $allowed:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn parse(s: &str) -> Result<$name, IdError> {
                if s.is_empty() {
                    return Err(IdError { what: $what, problem: "is empty".into() });
                }
                if s.len() > $max {
                    return Err(IdError {
                        what: $what,
                        problem: format!("is longer than {} characters", $max),
                    });
                }
                let allowed: fn(char) -> bool = $allowed;
                if let Some(bad) = s.chars().find(|c| !allowed(*c)) {
                    return Err(IdError {
                        what: $what,
                        problem: format!("contains the character {bad:?}"),
                    });
                }
                Ok($name(Arc::from(s)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<$name, IdError> {
                $name::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.to_string()
            }
        }
    };
}

fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-')
}

fn slug_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

fn label_char(c: char) -> bool {
    !c.is_control()
}

id_type!(
    /// The IVR's id of one call: the key of its hold (DESIGN invariant 3).
    CallId, "call_id", 128, token_char
);
id_type!(
    /// A merchant: lowercase letters, digits and dashes, e.g. "stjarnlinjen".
    MerchantId, "merchant_id", 64, slug_char
);
id_type!(
    /// A merchant's own id of a usage record (echoed in its acknowledgement).
    RecordId, "record_id", 128, token_char
);
id_type!(
    /// An immutable terms version, e.g. "t-469001234567-3".
    TermsId, "terms_id", 64, token_char
);
id_type!(
    /// An external reference that makes an operation idempotent: a purchase,
    /// a top-up, an invoice, a payment.
    Reference, "reference", 128, token_char
);
id_type!(
    /// Free-form label from a client (IVR node, line, reason); printable text.
    Label, "label", 256, label_char
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        assert!(CallId::parse("ivr1:2026-11-23:000123").is_ok());
        assert!(CallId::parse("").is_err());
        assert!(CallId::parse("a b").is_err());
        assert!(CallId::parse(&"x".repeat(129)).is_err());
        assert!(MerchantId::parse("stjarnlinjen").is_ok());
        assert!(MerchantId::parse("Stjarn").is_err());
        assert!(Label::parse("holder request, form 2026-11-20").is_ok());
        assert!(Label::parse("bad\nline").is_err());
        let e = CallId::parse("a{b}").unwrap_err();
        assert_eq!(e.to_string(), "call_id contains the character '{'");
    }
}
