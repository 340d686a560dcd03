//! Each provider's credentials as a type, declared in the provider's own module with
//! [`credentials!`](crate::credentials!): which keys a channel of that provider must have
//! and which it may have are declared once, there, and everything else follows from that
//! declaration: the API's validation of a channel (`credentials.<key>` missing or unknown),
//! the README's table, and the typed values the provider's module (sending, connection
//! check, media, webhook verification) reads (`creds.instance_token`, never a lookup by
//! string). Stored, they stay one encrypted JSON object of strings per channel; they are
//! parsed into their type where they are opened.

/// What a channel's stored credentials are, as the API merged and validated them.
pub type Map = std::collections::BTreeMap<String, String>;

/// A required key the stored credentials lack (a channel written before the key was
/// required, or edited in the database).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the channel has no credentials.{0}")]
pub struct Missing(pub &'static str);

/// Declares one provider's credentials type: a struct with a `String` per required key
/// and an `Option<String>` per optional one, its key lists, how it is read from the stored
/// map, and a `Debug` that names the type only (every field may be a secret).
#[macro_export]
macro_rules! credentials {
    (
        $(#[$doc:meta])*
        $name:ident {
            required: [$($req:ident),* $(,)?],
            optional: [$($opt:ident),* $(,)?] $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            $(pub $req: String,)*
            $(pub $opt: Option<String>,)*
        }

        impl $name {
            pub const REQUIRED: &'static [&'static str] = &[$(stringify!($req)),*];
            pub const OPTIONAL: &'static [&'static str] = &[$(stringify!($opt)),*];

            pub fn from_map(map: &$crate::credentials::Map) -> Result<Self, $crate::credentials::Missing> {
                Ok(Self {
                    $($req: map.get(stringify!($req)).cloned().ok_or($crate::credentials::Missing(stringify!($req)))?,)*
                    $($opt: map.get(stringify!($opt)).cloned(),)*
                })
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }
    };
}

/// Keys that hold a URL the tenant chose (checked against the SSRF policy when a channel
/// is saved; each provider's `Channel::urls` names them again before every call).
pub const URL_KEYS: [&str; 2] = ["base_url", "send_url"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{required, Credentials};
    use leadflow_shared::channel::Provider;

    #[test]
    fn a_map_with_the_required_keys_parses_and_a_missing_one_is_named() {
        for p in Provider::EVERY {
            let mut map: Map = required(p).iter().map(|k| (k.to_string(), format!("v-{k}"))).collect();
            assert!(Credentials::parse(p, &map).is_ok(), "{}", p.as_str());
            let first = required(p)[0];
            map.remove(first);
            assert_eq!(Credentials::parse(p, &map).unwrap_err(), Missing(first));
        }
        let map: Map = [
            ("instance_id", "3C0"),
            ("instance_token", "tok"),
            ("client_token", "ct"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        match Credentials::parse(Provider::ZApi, &map).unwrap() {
            Credentials::ZApi(c) => {
                assert_eq!((c.instance_id.as_str(), c.client_token.as_deref()), ("3C0", Some("ct")));
                assert_eq!(c.base_url, None);
                assert!(!format!("{c:?}").contains("tok"), "Debug shows no secret");
            }
            other => panic!("{other:?}"),
        }
    }
}
