//! Text PostgreSQL refuses: a NUL character (`\u0000` in JSON, a NUL byte in a form or
//! an e-mail) is rejected by `text` and `jsonb` columns alike, so one would turn a request
//! into a failed write. The rule, decided once: API input is the caller's to fix, so a
//! NUL there is a 422 naming the field ([`find_nul`]); provider and e-mail input cannot
//! be refused usefully (the provider would retry it forever, the mail is already read),
//! so NULs are dropped and the message is kept ([`strip_nul`], [`strip_nul_str`]).

use serde_json::Value;

/// The path of the first string (or object key) holding a NUL, as a field path:
/// `content`, `credentials.instance_id`, `messages[2].content`. `None`: none has one.
pub fn find_nul(v: &Value) -> Option<String> {
    fn walk(v: &Value, path: &mut String) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::Object(map) => map.iter().any(|(k, item)| {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&k.replace('\0', "\\u0000"));
                let found = k.contains('\0') || walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = String::new();
    walk(v, &mut path).then(|| if path.is_empty() { "body".into() } else { path })
}

/// Drops every NUL from the strings and keys of `v`.
pub fn strip_nul(v: &mut Value) {
    match v {
        Value::String(s) => strip_nul_str(s),
        Value::Array(items) => items.iter_mut().for_each(strip_nul),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                let old = std::mem::take(map);
                map.extend(old.into_iter().map(|(k, v)| (k.replace('\0', ""), v)));
            }
            map.values_mut().for_each(strip_nul);
        }
        _ => {}
    }
}

pub fn strip_nul_str(s: &mut String) {
    if s.contains('\0') {
        s.retain(|c| c != '\0');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_the_field_path() {
        assert_eq!(find_nul(&json!({"content": "ok"})), None);
        assert_eq!(find_nul(&json!({"content": "a\u{0}b"})).as_deref(), Some("content"));
        assert_eq!(
            find_nul(&json!({"credentials": {"instance_id": "x\u{0}"}})).as_deref(),
            Some("credentials.instance_id")
        );
        assert_eq!(
            find_nul(&json!({"messages": [{"content": "a"}, {"x": 1}, {"content": "\u{0}"}]})).as_deref(),
            Some("messages[2].content")
        );
        assert_eq!(find_nul(&json!("\u{0}")).as_deref(), Some("body"));
    }

    #[test]
    fn strips_strings_and_keys() {
        let mut v = json!({"te\u{0}xt": ["a\u{0}b", {"k": "\u{0}\u{0}c"}], "n": 1});
        strip_nul(&mut v);
        assert_eq!(v, json!({"text": ["ab", {"k": "c"}], "n": 1}));
    }
}
