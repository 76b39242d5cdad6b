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

/// Why a JSON-mode body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Invalid(Invalid),
    /// More messages than the per-append limit.
    TooManyMessages,
}

impl From<Invalid> for Refused {
    fn from(v: Invalid) -> Self {
        Refused::Invalid(v)
    }
}

/// One row of a body's stored form: its length, whether it starts and ends
/// on a message boundary, and how many messages end in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub len: usize,
    pub head_boundary: bool,
    pub tail_boundary: bool,
    pub messages: u64,
}

/// How messages share rows: packed up to the row size, or one message per
/// row (a stream that trims by message count drops rows, so each holds
/// exactly one message; see `protocol::retention`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    Shared,
    OnePerRow,
}

/// A JSON-mode body in its stored form: every message's exact bytes, each
/// followed by `,`, cut into rows of at most `row_bytes` between messages
/// where it can; a message longer than a row spans rows of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flattened {
    pub stored: Vec<u8>,
    pub rows: Vec<Row>,
    pub messages: u64,
}

/// Builds the stored form and its rows as messages arrive, in one pass:
/// nothing per message is kept but its bytes.
struct Writer {
    out: Flattened,
    row_bytes: usize,
    max_messages: u64,
    packing: Packing,
    /// Length and message count of the row being filled, if one is open.
    open: Option<(usize, u64)>,
}

impl Writer {
    fn close_row(&mut self) {
        if let Some((len, messages)) = self.open.take() {
            self.out.rows.push(Row {
                len,
                head_boundary: true,
                tail_boundary: true,
                messages,
            });
        }
    }

    fn push(&mut self, message: &[u8]) -> Result<(), Refused> {
        self.out.messages += 1;
        if self.out.messages > self.max_messages {
            return Err(Refused::TooManyMessages);
        }
        self.out.stored.extend_from_slice(message);
        self.out.stored.push(TERMINATOR);
        let len = message.len() + 1;
        let row = self.row_bytes;
        if len > row {
            self.close_row();
            let n = len.div_ceil(row);
            for i in 0..n {
                self.out.rows.push(Row {
                    len: row.min(len - i * row),
                    head_boundary: i == 0,
                    tail_boundary: i + 1 == n,
                    messages: u64::from(i + 1 == n),
                });
            }
        } else {
            match self.open {
                Some((open, n)) if open + len <= row && self.packing == Packing::Shared => {
                    self.open = Some((open + len, n + 1))
                }
                _ => {
                    self.close_row();
                    self.open = Some((len, 1));
                }
            }
        }
        Ok(())
    }
}

/// Visits a top-level array's elements one at a time, writing each one's
/// exact bytes; no list of elements is ever built.
struct Elements<'w>(&'w mut Writer);

impl<'de> serde::de::Visitor<'de> for Elements<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            if self.0.push(raw.get().as_bytes()).is_err() {
                return Err(serde::de::Error::custom(TOO_MANY));
            }
        }
        Ok(())
    }
}

const TOO_MANY: &str = "too many messages";

/// Validates a JSON-mode body as one JSON value and builds its stored form
/// (§9.1): a top-level array is flattened one level, each element a message
/// (§9.1.2); anything else is one message. One pass over the body: memory is
/// the stored form plus one entry per row, whatever the message count.
pub fn flatten(
    body: &[u8],
    purpose: JsonBody,
    row_bytes: usize,
    max_messages: u64,
) -> Result<Flattened, Refused> {
    flatten_packed(body, purpose, row_bytes, max_messages, Packing::Shared)
}

/// [`flatten`], with the rows packed as `packing` says.
pub fn flatten_packed(
    body: &[u8],
    purpose: JsonBody,
    row_bytes: usize,
    max_messages: u64,
    packing: Packing,
) -> Result<Flattened, Refused> {
    let text = std::str::from_utf8(body).map_err(|_| Invalid::Json)?;
    let mut w = Writer {
        out: Flattened {
            stored: Vec::with_capacity(body.len() + 1),
            rows: Vec::new(),
            messages: 0,
        },
        row_bytes: row_bytes.max(1),
        max_messages,
        packing,
        open: None,
    };
    if text.trim_start().starts_with('[') {
        let mut de = serde_json::Deserializer::from_str(text);
        let parsed =
            serde::Deserializer::deserialize_seq(&mut de, Elements(&mut w)).and_then(|()| de.end());
        if let Err(e) = parsed {
            let too_many = w.out.messages > w.max_messages || e.to_string().starts_with(TOO_MANY);
            return Err(if too_many {
                Refused::TooManyMessages
            } else {
                Invalid::Json.into()
            });
        }
        if w.out.messages == 0 && purpose == JsonBody::Append {
            return Err(Invalid::EmptyJsonArray.into());
        }
    } else {
        let value: &RawValue = serde_json::from_str(text).map_err(|_| Invalid::Json)?;
        w.push(value.get().as_bytes())?;
    }
    w.close_row();
    Ok(w.out)
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
        match flatten(body.as_bytes(), p, usize::MAX, u64::MAX) {
            Ok(f) => {
                let ends = boundaries(&f.stored);
                let mut from = 0;
                Ok(ends
                    .into_iter()
                    .map(|end| {
                        let m = String::from_utf8(f.stored[from..end - 1].to_vec()).unwrap();
                        from = end;
                        m
                    })
                    .collect())
            }
            Err(Refused::Invalid(v)) => Err(v),
            Err(Refused::TooManyMessages) => panic!("no limit here"),
        }
    }

    fn split_messages(body: &[u8], p: JsonBody) -> Result<Vec<String>, Invalid> {
        msgs(std::str::from_utf8(body).map_err(|_| Invalid::Json)?, p)
    }

    #[test]
    fn rows_cut_between_messages_and_big_messages_span_rows() {
        let f = flatten(br#"[1, 22, "0123456789", 3]"#, JsonBody::Append, 5, 100).unwrap();
        assert_eq!(f.stored, br#"1,22,"0123456789",3,"#);
        let shape: Vec<_> = f
            .rows
            .iter()
            .map(|r| (r.len, r.head_boundary, r.tail_boundary))
            .collect();
        assert_eq!(
            shape,
            [
                (5, true, true),
                (5, true, false),
                (5, false, false),
                (3, false, true),
                (2, true, true)
            ]
        );
        assert_eq!(f.messages, 4);
        let counts: Vec<u64> = f.rows.iter().map(|r| r.messages).collect();
        assert_eq!(
            counts,
            [2, 0, 0, 1, 1],
            "a message counts in the row it ends in"
        );
    }

    #[test]
    fn one_message_per_row_when_asked() {
        let f = flatten_packed(b"[1,2,3]", JsonBody::Append, 64, 100, Packing::OnePerRow).unwrap();
        let shape: Vec<_> = f.rows.iter().map(|r| (r.len, r.messages)).collect();
        assert_eq!(shape, [(2, 1), (2, 1), (2, 1)]);
        let packed = flatten(b"[1,2,3]", JsonBody::Append, 64, 100).unwrap();
        assert_eq!(packed.rows.len(), 1);
        assert_eq!(packed.rows[0].messages, 3);
    }

    #[test]
    fn the_message_limit_is_enforced_while_parsing() {
        assert_eq!(
            flatten(b"[1,2,3]", JsonBody::Append, 64, 2),
            Err(Refused::TooManyMessages)
        );
        assert!(flatten(b"[1,2]", JsonBody::Append, 64, 2).is_ok());
        assert!(flatten(b"{\"a\":[1,2,3]}", JsonBody::Append, 64, 1).is_ok());
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
        assert_eq!(
            flatten(&[0xff, 0xfe], JsonBody::Append, 64, 9),
            Err(Refused::Invalid(Invalid::Json))
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
