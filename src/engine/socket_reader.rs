//! A socket reader's position and what its hibernatable socket remembers of
//! it (`cloudflare/sockets.rs`). The stream's object may be evicted while
//! its readers wait; each socket's attachment is then all that is left of
//! its reader, and a new instance of the object resumes every reader from
//! it. So the conversion both ways lives here, on the host, tested.
//!
//! An attachment is at most 16 KiB (the platform's limit): positions are
//! strings, so no value nears JavaScript's 2^53, and the one free-form field,
//! an SSE reader's cursor, is bounded by the query's parser. Attachments of
//! an older build (fields added since default) still parse.

use crate::engine::live::{LongPoll, SseState};
use crate::engine::ws::WsState;
use crate::protocol::offset::Offset;
use serde::{Deserialize, Serialize};

/// A socket reader's position, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reader {
    /// A client's `live=ws` reader (JSON frames).
    Client(WsState),
    /// The Worker's bridge for an SSE reader.
    Sse(SseState),
    /// A long-poll held by the Worker; the Worker owns its deadline.
    LongPoll(LongPoll),
}

/// What a socket remembers across evictions. Readers with equal
/// attachments get the same frames, so they are grouped by it (`Ord`) and
/// each group's frames are computed once.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Attachment {
    /// The reader's position.
    o: String,
    /// Whether its first frame went out.
    s: bool,
    /// The kind: 0 a client's `live=ws` reader, 1 the Worker's SSE bridge,
    /// 2 a long-poll.
    #[serde(default)]
    k: u8,
    /// The SSE reader's cursor, if its client sent one.
    #[serde(default)]
    c: Option<String>,
    /// Whether more is stored than it was sent: it asks with `more`, and
    /// changes do not push to it meanwhile (a reader paces its catch-up).
    #[serde(default)]
    p: bool,
    /// A long-poll's answer may be cached (its offset names the stream's
    /// incarnation, §10.1).
    #[serde(default)]
    n: bool,
    /// Its `more` is being answered: another `more` meanwhile is ignored,
    /// or a fork's inherited read, awaited in between, would send the same
    /// batch twice.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    b: bool,
}

impl Reader {
    pub fn offset(&self) -> Offset {
        match self {
            Reader::Client(s) => s.offset,
            Reader::Sse(s) => s.offset,
            Reader::LongPoll(w) => w.offset,
        }
    }

    /// The attachment of a socket whose reader is here; `pending`: more is
    /// stored than was sent.
    pub fn attachment(&self, pending: bool) -> Attachment {
        let at = |offset: Offset, started: bool, kind: u8| Attachment {
            o: offset.position().to_string(),
            s: started,
            k: kind,
            c: None,
            p: pending,
            n: false,
            b: false,
        };
        match self {
            Reader::Client(s) => at(s.offset, s.started, 0),
            Reader::Sse(s) => Attachment {
                c: s.cursor.clone(),
                ..at(s.offset, s.started, 1)
            },
            Reader::LongPoll(w) => Attachment {
                n: w.pinned,
                ..at(w.offset, true, 2)
            },
        }
    }
}

impl Attachment {
    /// Whether the reader waits to ask for its next batch itself.
    pub fn pending(&self) -> bool {
        self.p
    }

    /// Whether a `more` of this reader may be answered now: it has more
    /// stored than it was sent, and no answer is already on its way. The
    /// answer's own attachment ([`Reader::attachment`]) ends the wait.
    pub fn answers_more(&self) -> bool {
        self.p && !self.b
    }

    /// The attachment while a `more` is answered.
    pub fn answering(&self) -> Attachment {
        Attachment {
            b: true,
            ..self.clone()
        }
    }

    /// The reader this attachment names, `None` if it names none (an
    /// unknown kind or a position that is not one): such a socket is not a
    /// reader of ours. A long-poll comes back without its deadline (the
    /// Worker answers at it) and without a cursor (the Worker's answer
    /// carries the client's).
    pub fn reader(&self) -> Option<Reader> {
        let offset = Offset::new(self.o.parse().ok()?)?;
        Some(match self.k {
            0 => Reader::Client(WsState {
                offset,
                started: self.s,
            }),
            1 => Reader::Sse(SseState {
                offset,
                cursor: self.c.clone(),
                started: self.s,
            }),
            2 => Reader::LongPoll(LongPoll {
                offset,
                deadline: u64::MAX,
                cursor: None,
                from_start: false,
                pinned: self.n,
            }),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(a: &Attachment) -> String {
        serde_json::to_string(a).unwrap()
    }

    fn parse(s: &str) -> Attachment {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn every_kind_survives_an_eviction() {
        let offset = Offset::new(crate::protocol::offset::MAX_SAFE_INTEGER).unwrap();
        let readers = [
            Reader::Client(WsState {
                offset,
                started: true,
            }),
            Reader::Sse(SseState {
                offset,
                cursor: Some("c-1".into()),
                started: false,
            }),
            Reader::LongPoll(LongPoll {
                offset,
                deadline: u64::MAX,
                cursor: None,
                from_start: false,
                pinned: true,
            }),
        ];
        for r in readers {
            for pending in [false, true] {
                let back = parse(&json(&r.attachment(pending)));
                assert_eq!(back.pending(), pending);
                assert_eq!(back.reader(), Some(r.clone()));
            }
        }
    }

    #[test]
    fn a_long_poll_leaves_its_deadline_and_cursor_to_the_worker() {
        let r = Reader::LongPoll(LongPoll {
            offset: Offset::new(7).unwrap(),
            deadline: 1_000,
            cursor: Some("x".into()),
            from_start: true,
            pinned: false,
        });
        let Some(Reader::LongPoll(w)) = r.attachment(false).reader() else {
            panic!("not a long-poll")
        };
        assert_eq!(
            (w.offset, w.deadline, w.cursor, w.from_start),
            (r.offset(), u64::MAX, None, false)
        );
    }

    #[test]
    fn equal_positions_group_together_and_others_apart() {
        let sse = |o: u64, cursor: Option<&str>| {
            Reader::Sse(SseState {
                offset: Offset::new(o).unwrap(),
                cursor: cursor.map(Into::into),
                started: true,
            })
            .attachment(false)
        };
        assert_eq!(sse(5, None), sse(5, None));
        assert_ne!(sse(5, None), sse(6, None));
        assert_ne!(sse(5, None), sse(5, Some("c")));
        assert_ne!(
            sse(5, None),
            sse(5, None).reader().unwrap().attachment(true)
        );
    }

    #[test]
    fn one_more_is_answered_at_a_time() {
        let r = Reader::Client(WsState {
            offset: Offset::new(3).unwrap(),
            started: true,
        });
        assert!(
            !r.attachment(false).answers_more(),
            "nothing more is stored"
        );
        let waiting = r.attachment(true);
        assert!(waiting.answers_more());
        let busy = parse(&json(&waiting.answering()));
        assert!(!busy.answers_more() && busy.pending());
        assert_eq!(busy.reader(), Some(r.clone()));
        // The answer's attachment clears it; a plain one never carries it.
        assert!(r.attachment(true).answers_more());
        assert!(!json(&waiting).contains("\"b\""));
    }

    #[test]
    fn an_older_builds_attachment_still_parses() {
        // Before kinds, cursors and pacing: a client's reader.
        let r = parse(r#"{"o":"12","s":true}"#).reader();
        assert_eq!(
            r,
            Some(Reader::Client(WsState {
                offset: Offset::new(12).unwrap(),
                started: true
            }))
        );
    }

    #[test]
    fn an_attachment_that_names_no_reader_is_refused() {
        for bad in [
            r#"{"o":"12","s":true,"k":9}"#,
            r#"{"o":"-1","s":true}"#,
            r#"{"o":"x","s":true}"#,
            r#"{"o":"99999999999999999999","s":true}"#,
            // Past 2^53 - 1: not a position.
            r#"{"o":"9007199254740992","s":true}"#,
        ] {
            assert_eq!(parse(bad).reader(), None, "{bad}");
        }
        assert!(serde_json::from_str::<Attachment>(r#"{"s":true}"#).is_err());
    }
}
