//! JSON mode (PROTOCOL.md §9.1): validation, one-level flattening and the
//! stored representation.
//!
//! A body is validated as one JSON value. A top-level array is flattened one
//! level: each element is a message (§9.1.2); anything else is one message.
//! Each message keeps its exact bytes. Stored, every message is followed by a
//! `,`, so a read of any run of whole messages is `[` + bytes without the last
//! `,` + `]` (§9.1.5), and byte positions in offsets count those bytes.

use super::error::Invalid;
use serde_json::value::RawValue;

/// What the body is for: an append rejects `[]` (§9.1.3), a create allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonBody {
    Append,
    Create,
}

/// The messages of a JSON-mode body, each as its exact bytes.
pub fn split_messages(body: &[u8], purpose: JsonBody) -> Result<Vec<&[u8]>, Invalid> {
    let text = std::str::from_utf8(body).map_err(|_| Invalid::Json)?;
    let value: &RawValue = serde_json::from_str(text).map_err(|_| Invalid::Json)?;
    let raw = value.get();
    if !raw.starts_with('[') {
        return Ok(vec![raw.as_bytes()]);
    }
    let items: Vec<&RawValue> = serde_json::from_str(raw).map_err(|_| Invalid::Json)?;
    if items.is_empty() && purpose == JsonBody::Append {
        return Err(Invalid::EmptyJsonArray);
    }
    Ok(items.into_iter().map(|v| v.get().as_bytes()).collect())
}

/// Stored bytes of one message: the message and its `,` terminator.
pub const TERMINATOR: u8 = b',';

/// Wraps stored bytes (whole messages, each with its terminator) as the JSON
/// array a read returns.
pub fn wrap_stored(stored: &[u8]) -> Vec<u8> {
    let inner = stored.strip_suffix(&[TERMINATOR]).unwrap_or(stored);
    let mut out = Vec::with_capacity(inner.len() + 2);
    out.push(b'[');
    out.extend_from_slice(inner);
    out.push(b']');
    out
}

/// Byte lengths of the stored messages in `stored`, which must start on a
/// message boundary. The scan follows strings and escapes, so a `,` inside a
/// string or a nested value is not a boundary. Returns the boundary positions
/// (exclusive ends, just after each terminator).
pub fn boundaries(stored: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut depth: u32 = 0;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in stored.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth = depth.saturating_sub(1),
            TERMINATOR if depth == 0 => out.push(i + 1),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(body: &str, p: JsonBody) -> Result<Vec<String>, Invalid> {
        split_messages(body.as_bytes(), p).map(|v| {
            v.into_iter()
                .map(|m| String::from_utf8(m.to_vec()).unwrap())
                .collect()
        })
    }

    #[test]
    fn flattens_exactly_one_level() {
        assert_eq!(
            msgs(r#"{"event": "created"}"#, JsonBody::Append).unwrap(),
            [r#"{"event": "created"}"#]
        );
        assert_eq!(
            msgs(r#"[{"a":1}, {"b":2}]"#, JsonBody::Append).unwrap(),
            [r#"{"a":1}"#, r#"{"b":2}"#]
        );
        assert_eq!(
            msgs("[[1,2], [3,4]]", JsonBody::Append).unwrap(),
            ["[1,2]", "[3,4]"]
        );
        assert_eq!(
            msgs("[[[1,2,3]]]", JsonBody::Append).unwrap(),
            ["[[1,2,3]]"]
        );
        assert_eq!(msgs("  \"x\"\n", JsonBody::Append).unwrap(), ["\"x\""]);
    }

    #[test]
    fn empty_array_is_refused_only_on_append() {
        assert_eq!(msgs("[]", JsonBody::Append), Err(Invalid::EmptyJsonArray));
        assert_eq!(
            msgs(" [ ] ", JsonBody::Create).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn invalid_json_is_refused() {
        for s in [
            "",
            "{",
            "[1,]",
            "{\"a\":1} {\"b\":2}",
            "nul",
            "\u{feff}{}",
            "'x'",
        ] {
            assert_eq!(msgs(s, JsonBody::Append), Err(Invalid::Json), "{s:?}");
        }
        assert_eq!(
            split_messages(&[0xff, 0xfe], JsonBody::Append),
            Err(Invalid::Json)
        );
    }

    #[test]
    fn wraps_stored_messages() {
        assert_eq!(wrap_stored(b"1,{\"a\":2},"), b"[1,{\"a\":2}]");
        assert_eq!(wrap_stored(b""), b"[]");
    }

    #[test]
    fn finds_boundaries_outside_strings_and_nesting() {
        let stored = br#"{"a":"x,y"},[1,2],"q\",",3,"#;
        assert_eq!(boundaries(stored), vec![12, 18, 25, 27]);
    }
}
