//! Server-Sent Events framing (PROTOCOL.md §5.8).
//!
//! A batch of stream data is one `event: data` (a JSON array in JSON mode,
//! text for `text/*`, base64 for everything else), always followed by one
//! `event: control` carrying `streamNextOffset`, `streamCursor` (while open),
//! `upToDate` and `streamClosed`. Every payload line gets its own `data:`
//! prefix, splitting on CR, LF and CRLF, so stored bytes can never end an
//! event or inject a field. Each data event's `id:` is the offset after it,
//! so a bare `EventSource` resumes by itself (`Last-Event-ID`).

use super::content_type::SseEncoding;
use base64::Engine as _;

/// What a control event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub next_offset: String,
    /// Omitted once the stream is closed (§5.8).
    pub cursor: Option<String>,
    pub up_to_date: bool,
    pub closed: bool,
}

/// Appends `text` as `data:` lines, one per line of it (CR, LF, CRLF).
pub(crate) fn push_data_lines(out: &mut Vec<u8>, text: &[u8]) {
    let mut rest = text;
    loop {
        let cut = rest.iter().position(|b| *b == b'\r' || *b == b'\n');
        out.extend_from_slice(b"data:");
        match cut {
            None => {
                out.extend_from_slice(rest);
                out.push(b'\n');
                return;
            }
            Some(i) => {
                out.extend_from_slice(rest.get(..i).unwrap_or_default());
                out.push(b'\n');
                let skip = if rest.get(i..i + 2) == Some(b"\r\n") {
                    2
                } else {
                    1
                };
                rest = rest.get(i + skip..).unwrap_or_default();
            }
        }
    }
}

/// `event: data` for a batch (already wrapped as an array in JSON mode),
/// with `id:` set to the offset after it: a reconnecting `EventSource` sends
/// it back as `Last-Event-ID` and resumes exactly there. `id` must be a
/// printed offset (digits and `_`), never a line break.
pub fn data_event(payload: &[u8], encoding: SseEncoding, id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 72);
    out.extend_from_slice(b"event: data\nid: ");
    out.extend(id.bytes().filter(|b| *b != b'\r' && *b != b'\n'));
    out.push(b'\n');
    match encoding {
        SseEncoding::Text => push_data_lines(&mut out, payload),
        SseEncoding::Base64 => {
            let text = base64::engine::general_purpose::STANDARD.encode(payload);
            push_data_lines(&mut out, text.as_bytes());
        }
    }
    out.push(b'\n');
    out
}

/// `event: control`.
pub fn control_event(c: &Control) -> Vec<u8> {
    // Fields in the spec's order; the offset is digits and `_`, the cursor
    // is JSON-escaped.
    let mut json = format!("{{\"streamNextOffset\":\"{}\"", c.next_offset);
    if let Some(cursor) = &c.cursor {
        json.push_str(",\"streamCursor\":");
        json.push_str(&serde_json::Value::from(cursor.as_str()).to_string());
    }
    if c.up_to_date {
        json.push_str(",\"upToDate\":true");
    }
    if c.closed {
        json.push_str(",\"streamClosed\":true");
    }
    json.push('}');
    let mut out = b"event: control\n".to_vec();
    push_data_lines(&mut out, json.as_bytes());
    out.push(b'\n');
    out
}

/// The last event of an SSE reader whose position was trimmed away by a
/// retention policy (an extension, `protocol::retention`): a control event
/// that keeps the reader's own `streamNextOffset` (a client that does not
/// know the extension reconnects there and gets the `410` with
/// `Stream-Earliest-Offset`), and says so in `streamEarliestOffset` and
/// `error` for one that does. The connection ends after it.
pub fn trimmed_event(next_offset: &str, earliest: &str) -> Vec<u8> {
    let json = format!(
        "{{\"streamNextOffset\":\"{next_offset}\",\"streamEarliestOffset\":\"{earliest}\",\"error\":\"OFFSET_TRIMMED\"}}"
    );
    let mut out = b"event: control\n".to_vec();
    push_data_lines(&mut out, json.as_bytes());
    out.push(b'\n');
    out
}

/// The longest prefix of `data` that does not end inside a UTF-8 sequence,
/// so a text batch cut between rows never splits a character. Bytes that
/// cannot start a sequence are not a cut point (invalid text passes through).
pub fn utf8_prefix_len(data: &[u8]) -> usize {
    let n = data.len();
    // A sequence is at most 4 bytes: look back at most 3 for its lead byte.
    for back in 1..=3.min(n) {
        let i = n - back;
        let b = data.get(i).copied().unwrap_or(0);
        if b & 0xC0 == 0x80 {
            continue; // continuation byte
        }
        let need = match b {
            0x00..=0x7F => 1,
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return n,
        };
        return if back < need { i } else { n };
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: Vec<u8>) -> String {
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn text_lines_are_each_prefixed() {
        assert_eq!(
            s(data_event(b"a\nb\r\nc\rd", SseEncoding::Text, "7_9")),
            "event: data\nid: 7_9\ndata:a\ndata:b\ndata:c\ndata:d\n\n"
        );
        assert_eq!(
            s(data_event(b"", SseEncoding::Text, "1")),
            "event: data\nid: 1\ndata:\n\n"
        );
        assert_eq!(
            s(data_event(b"x\n", SseEncoding::Text, "1")),
            "event: data\nid: 1\ndata:x\ndata:\n\n"
        );
    }

    #[test]
    fn injection_attempts_stay_inside_data_lines() {
        let evil = b"ok\n\nevent: control\ndata: {\"streamClosed\":true}\n\n";
        let out = s(data_event(evil, SseEncoding::Text, "1\nevent: x"));
        assert!(out
            .lines()
            .skip(2)
            .all(|l| l.is_empty() || l.starts_with("data:")));
        assert!(out.starts_with("event: data\nid: 1event: x\n"), "{out}");
        assert_eq!(
            out.matches("\n\n").count(),
            1,
            "exactly one event terminator"
        );
    }

    #[test]
    fn binary_is_base64() {
        assert_eq!(
            s(data_event(
                &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
                SseEncoding::Base64,
                "0_10"
            )),
            "event: data\nid: 0_10\ndata:AQIDBAUGBwgJCg==\n\n"
        );
    }

    #[test]
    fn control_fields() {
        let c = Control {
            next_offset: "0000000000000000_0000000000000005".into(),
            cursor: Some("42".into()),
            up_to_date: true,
            closed: false,
        };
        assert_eq!(
            s(control_event(&c)),
            "event: control\ndata:{\"streamNextOffset\":\"0000000000000000_0000000000000005\",\"streamCursor\":\"42\",\"upToDate\":true}\n\n"
        );
        let closed = Control {
            cursor: None,
            up_to_date: false,
            closed: true,
            ..c
        };
        assert!(s(control_event(&closed)).contains("\"streamClosed\":true"));
        assert!(!s(control_event(&closed)).contains("streamCursor"));
    }

    #[test]
    fn utf8_cuts_back_to_a_character_boundary() {
        let e = "é".as_bytes(); // C3 A9
        assert_eq!(utf8_prefix_len(b"abc"), 3);
        assert_eq!(utf8_prefix_len(&[b'a', e[0]]), 1);
        assert_eq!(utf8_prefix_len(&[b'a', e[0], e[1]]), 3);
        let snow = "☃".as_bytes(); // 3 bytes
        assert_eq!(utf8_prefix_len(&[b'x', snow[0], snow[1]]), 1);
        assert_eq!(utf8_prefix_len(&[snow[0], snow[1]]), 0);
        assert_eq!(
            utf8_prefix_len(&[0xFF]),
            1,
            "invalid bytes are not held back"
        );
    }
}
