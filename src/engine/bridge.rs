//! Frames on the bridge between the Worker and a stream's object (README,
//! Live reads): a live reader's HTTP request is held by the Worker, which
//! waits on a hibernatable socket to the object. Every frame is a binary
//! message whose first line is ASCII: a kind, then fields.
//!
//! An SSE reader's frame (PROTOCOL.md §5.8) carries the reader's position
//! after the events, as printed (the Worker's keep-alives and reconnects need
//! it), flags, and then the SSE events exactly as the response body carries
//! them, which the Worker passes on without looking at them:
//!
//! ```text
//! s 0001796237934004_0000000000000015 +\n
//! event: data\nid: ...\ndata:...\n\nevent: control\n...
//! ```
//!
//! Flags: `+` when more is stored (the reader asks for it with `more`), `x`
//! when the reader ends here (the stream closed or is gone; the socket's own
//! close may arrive late, so the Worker ends on this).
//!
//! A long-poll's frame (§5.7) is a whole HTTP answer: `a` for the answer, or
//! `t` for the answer to give if the long-poll times out first (sent when
//! the reader starts to wait, so the timeout needs no trip to the object):
//!
//! ```text
//! a\n200\ncontent-type: text/plain\nstream-next-offset: ...\n\n<body>
//! ```
//!
//! Pure: no I/O; the adapter sends and receives the bytes.

use super::response::Response;

/// Longest first line of an SSE frame (an offset is 33 bytes).
pub const MAX_SSE_HEAD: usize = 128;

/// What a reader sends for its next batch.
pub const MORE: &str = "more";

/// An SSE frame's first line, read from the message's first bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct SseHead<'a> {
    pub next: &'a str,
    pub more: bool,
    pub end: bool,
    /// Where the events start in the message.
    pub events_at: usize,
}

/// An SSE frame: `next` (printed), the flags, then `events`.
pub fn sse_frame(next: &str, more: bool, end: bool, events: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(events.len() + next.len() + 6);
    frame.extend_from_slice(b"s ");
    frame.extend_from_slice(next.as_bytes());
    if more {
        frame.extend_from_slice(b" +");
    } else if end {
        frame.extend_from_slice(b" x");
    }
    frame.push(b'\n');
    frame.extend_from_slice(events);
    frame
}

/// Reads an SSE frame's first line from the first bytes of the message
/// (at least [`MAX_SSE_HEAD`] of them, or all).
pub fn parse_sse(start: &[u8]) -> Option<SseHead<'_>> {
    let end = start.iter().position(|b| *b == b'\n')?;
    let head = std::str::from_utf8(start.get(..end)?).ok()?;
    let rest = head.strip_prefix("s ")?;
    let (next, flags) = rest.split_once(' ').unwrap_or((rest, ""));
    Some(SseHead {
        next,
        more: flags.contains('+'),
        end: flags.contains('x'),
        events_at: end + 1,
    })
}

/// The events of an SSE frame, if it is one.
pub fn sse_events(frame: &[u8]) -> Option<&[u8]> {
    let head = parse_sse(frame.get(..frame.len().min(MAX_SSE_HEAD))?)?;
    frame.get(head.events_at..)
}

/// Which answer a long-poll frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The answer: the long-poll ends with it.
    Now,
    /// The answer if the long-poll times out first.
    AtTimeout,
}

/// A long-poll frame around an HTTP answer. Header values are our own and
/// never hold a line break.
pub fn answer_frame(kind: Answer, r: &Response) -> Vec<u8> {
    let mut frame = Vec::with_capacity(r.body.len() + 256);
    frame.extend_from_slice(match kind {
        Answer::Now => b"a\n",
        Answer::AtTimeout => b"t\n",
    });
    frame.extend_from_slice(r.status.to_string().as_bytes());
    frame.push(b'\n');
    for (name, value) in &r.headers {
        frame.extend_from_slice(name.as_bytes());
        frame.extend_from_slice(b": ");
        frame.extend_from_slice(value.as_bytes());
        frame.push(b'\n');
    }
    frame.push(b'\n');
    frame.extend_from_slice(&r.body);
    frame
}

/// A long-poll frame's head: its kind, status and headers, and where the
/// body starts.
#[derive(Debug, PartialEq, Eq)]
pub struct AnswerHead {
    pub kind: Answer,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body_at: usize,
}

/// Reads a long-poll frame's head (the body is not needed for it).
pub fn parse_answer(frame: &[u8]) -> Option<AnswerHead> {
    let end = frame.windows(2).position(|w| w == b"\n\n")?;
    let head = std::str::from_utf8(frame.get(..end)?).ok()?;
    let mut lines = head.split('\n');
    let kind = match lines.next()? {
        "a" => Answer::Now,
        "t" => Answer::AtTimeout,
        _ => return None,
    };
    let status = lines.next()?.parse().ok()?;
    let headers = lines
        .map(|l| {
            l.split_once(": ")
                .map(|(n, v)| (n.to_string(), v.to_string()))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(AnswerHead {
        kind,
        status,
        headers,
        body_at: end + 2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_frames_round_trip() {
        let f = sse_frame("0_5", true, false, b"event: data\ndata:x\n\n");
        let head = parse_sse(&f).unwrap();
        assert_eq!(head.next, "0_5");
        assert!(head.more && !head.end);
        assert_eq!(&f[head.events_at..], b"event: data\ndata:x\n\n");
        let f = sse_frame("0_9", false, true, b"");
        let head = parse_sse(&f).unwrap();
        assert!(!head.more && head.end);
        assert_eq!(sse_events(&f), Some(&b""[..]));
        let f = sse_frame("0_9", false, false, b"e");
        let head = parse_sse(&f).unwrap();
        assert!(!head.more && !head.end);
    }

    #[test]
    fn answers_round_trip() {
        let r = Response::new(204)
            .header("stream-next-offset", "0_3")
            .header("stream-up-to-date", "true");
        let f = answer_frame(Answer::AtTimeout, &r);
        let head = parse_answer(&f).unwrap();
        assert_eq!(head.kind, Answer::AtTimeout);
        assert_eq!(head.status, 204);
        assert_eq!(head.headers.len(), 2);
        assert_eq!(head.body_at, f.len());
        let r = Response::new(200)
            .header("a", "b")
            .body(b"\n\nbody".to_vec());
        let f = answer_frame(Answer::Now, &r);
        let head = parse_answer(&f).unwrap();
        assert_eq!(head.kind, Answer::Now);
        assert_eq!(&f[head.body_at..], b"\n\nbody");
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(parse_sse(b"no newline"), None);
        assert_eq!(parse_sse(b"a 0_1\n"), None);
        assert_eq!(parse_answer(b"x\n200\n\n"), None);
        assert_eq!(parse_answer(b"a\nnot\n\n"), None);
        assert_eq!(parse_answer(b"a\n200\nno colon\n\n"), None);
    }
}
