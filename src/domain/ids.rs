//! Typed, prefixed ids (`ten_…`, `con_…`) and the unguessable public id that
//! appears in a connection's webhook and auth URLs.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::secrets::{hex, random_bytes};

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new random id: the prefix and 128 random bits in hex.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, hex(&random_bytes(16))))
            }

            /// Accepts only the exact shape `generate` produces.
            pub fn parse(text: &str) -> Option<Self> {
                let rest = text.strip_prefix($prefix)?;
                let ok = rest.len() == 32
                    && rest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                ok.then(|| Self(text.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// For values read back from the database, which only ever holds
            /// ids that `generate` made.
            pub(crate) fn from_trusted(text: String) -> Self {
                Self(text)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

prefixed_id!(
    /// A tenant: one chatbot.
    TenantId,
    "ten_"
);
prefixed_id!(
    /// A connection, as named in the management API.
    ConnectionId,
    "con_"
);

/// The id in a connection's public URLs (webhook, auth): 192 random bits,
/// URL-safe base64. Distinct from [`ConnectionId`], so the URLs can be rotated
/// without renaming the connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PublicId(String);

impl PublicId {
    pub fn generate() -> Self {
        Self(URL_SAFE_NO_PAD.encode(random_bytes(24)))
    }

    pub fn parse(text: &str) -> Option<Self> {
        let ok = text.len() == 32
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn from_trusted(text: String) -> Self {
        Self(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_others_do_not() {
        let t = TenantId::generate();
        assert_eq!(TenantId::parse(t.as_str()), Some(t.clone()));
        assert!(ConnectionId::parse(t.as_str()).is_none());
        for bad in [
            "",
            "ten_",
            "ten_xyz",
            "ten_0123456789abcdef0123456789ABCDEF",
            "../etc",
        ] {
            assert!(TenantId::parse(bad).is_none(), "{bad}");
        }
        let p = PublicId::generate();
        assert_eq!(PublicId::parse(p.as_str()), Some(p.clone()));
        assert!(PublicId::parse("short").is_none());
        assert_ne!(PublicId::generate(), p);
    }
}

/// A queue row's id (`evt_…`, `msg_…`): the time in milliseconds, then 64
/// random bits. Rows written together sort together, so a batch of new rows
/// lands on the last page of the id index instead of one random page each
/// (BENCHMARKS.md: a third of the pages a callback batch wrote).
pub fn queue_id(prefix: &str) -> String {
    let now = u64::try_from(super::now_millis()).unwrap_or(0);
    format!(
        "{prefix}_{now:012x}{}",
        crate::secrets::hex(&crate::secrets::random_bytes(8))
    )
}

/// A new outbound message's id (`msg_…`): replies and the send API's.
pub fn new_message_id() -> String {
    queue_id("msg")
}

#[cfg(test)]
mod queue_id_tests {
    #[test]
    fn later_ids_sort_after_earlier_ones() {
        let first = super::queue_id("evt");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = super::queue_id("evt");
        assert!(first.starts_with("evt_") && first.len() == 4 + 12 + 16);
        assert!(first < second, "{first} < {second}");
    }
}
