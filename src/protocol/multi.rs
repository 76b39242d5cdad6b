//! Several streams on one SSE connection, an extension (PROTOCOL.md §11
//! lets servers add routes and parameters; README, "Several streams on one
//! connection"):
//!
//! ```text
//! GET /v1/multi?live=sse&s=<offset>:<path>&s=<offset>:<path>...
//! ```
//!
//! Each `s` names one stream (its path as after `/v1/stream/`) and the
//! offset to read it from (`-1`, `now` or an offset it printed), as an
//! ordinary query value (`URLSearchParams` encodes it). One to
//! [`MAX_STREAMS`] distinct streams. Every batch of every stream is one SSE
//! `message` event (so a bare `EventSource`'s `onmessage` sees it) whose
//! data is the WebSocket transport's JSON frame (`engine::ws`) tagged with
//! the stream:
//!
//! ```text
//! id: <offset of stream 1>,<offset of stream 2>,...
//! data: {"stream":"chat/a","data":...,"nextOffset":"...","upToDate":true,"closed":false}
//! ```
//!
//! The `id:` lists every stream's next offset in the order of the `s`
//! parameters (`-1` for a stream none of whose data was sent yet), so a
//! reconnecting `EventSource`'s `Last-Event-ID` resumes every stream exactly (it overrides the offsets in the URL, which still
//! names the streams). A stream that is deleted or expires gets one
//! `{"stream":...,"gone":true}` event; the response ends once every stream
//! is closed or gone. Pure: the adapter (`cloudflare/multi.rs`) holds the
//! sockets.

use super::error::{Invalid, ProtocolError};
use super::offset::OffsetParam;
use super::path::StreamPath;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

/// The route.
pub const ROUTE: &str = "/v1/multi";
/// The methods [`ROUTE`] answers (a 405 names them in `Allow`).
pub const METHODS: &str = "GET, OPTIONS";
/// Most streams one connection may name.
pub const MAX_STREAMS: usize = 32;
/// Longest `Last-Event-ID` accepted (every offset is 33 bytes).
const MAX_ID_LEN: usize = MAX_STREAMS * 40;

/// One stream of a multi-stream read, and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub path: StreamPath,
    /// `-1`, `now` or a printed offset, as the stream's own `offset=` takes it.
    pub offset: String,
}

/// The streams a multi-stream read names, with `Last-Event-ID` applied.
pub fn parse(query: &str, last_event_id: Option<&str>) -> Result<Vec<Named>, ProtocolError> {
    let mut named: Vec<Named> = Vec::new();
    let mut live = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "live" if live.is_none() => live = Some(v.into_owned()),
            "live" => return Err(Invalid::LiveMode.into()),
            "s" => {
                if named.len() == MAX_STREAMS {
                    return Err(Invalid::MultiStreams.into());
                }
                let (offset, name) = v.split_once(':').ok_or(Invalid::MultiStreams)?;
                offset.parse::<OffsetParam>().map_err(|_| Invalid::Offset)?;
                let path = from_name(name)?;
                if named.iter().any(|n| n.path == path) {
                    return Err(Invalid::MultiStreams.into());
                }
                named.push(Named {
                    path,
                    offset: offset.to_string(),
                });
            }
            _ => {}
        }
    }
    if live.as_deref() != Some("sse") {
        return Err(Invalid::MultiLive.into());
    }
    if named.is_empty() {
        return Err(Invalid::MultiStreams.into());
    }
    if let Some(id) = last_event_id.map(str::trim).filter(|i| !i.is_empty()) {
        let offsets: Vec<&str> = id.split(',').collect();
        if id.len() > MAX_ID_LEN || offsets.len() != named.len() {
            return Err(Invalid::MultiLastEventId.into());
        }
        for (n, o) in named.iter_mut().zip(offsets) {
            match o.parse::<OffsetParam>() {
                Ok(OffsetParam::At(_) | OffsetParam::Start) => n.offset = o.to_string(),
                _ => return Err(Invalid::MultiLastEventId.into()),
            }
        }
    }
    Ok(named)
}

/// A stream name (decoded) as a validated path.
fn from_name(name: &str) -> Result<StreamPath, ProtocolError> {
    let raw: Vec<String> = name
        .split('/')
        .map(|seg| utf8_percent_encode(seg, NON_ALPHANUMERIC).to_string())
        .collect();
    StreamPath::parse(&raw.join("/"))
}

/// The `id:` of an event: every stream's next offset, in order.
pub fn resume_id<'a>(offsets: impl IntoIterator<Item = &'a str>) -> String {
    offsets.into_iter().collect::<Vec<_>>().join(",")
}

/// The SSE event for one WebSocket-transport `frame` of `path`, or `None`
/// if the frame is not a JSON object.
pub fn event(path: &StreamPath, frame: &str, id: &str) -> Option<Vec<u8>> {
    let rest = frame.strip_prefix('{')?;
    let tag = serde_json::Value::from(path.as_str()).to_string();
    let mut out = Vec::with_capacity(frame.len() + tag.len() + id.len() + 32);
    out.extend_from_slice(b"id: ");
    out.extend(id.bytes().filter(|b| *b != b'\r' && *b != b'\n'));
    out.push(b'\n');
    let body = format!("{{\"stream\":{tag},{rest}");
    super::sse::push_data_lines(&mut out, body.as_bytes());
    out.push(b'\n');
    Some(out)
}

/// The event that says `path` is gone (deleted or expired).
pub fn gone_event(path: &StreamPath, id: &str) -> Vec<u8> {
    let tag = serde_json::Value::from(path.as_str()).to_string();
    let mut out = format!("id: {id}\n").into_bytes();
    super::sse::push_data_lines(
        &mut out,
        format!("{{\"stream\":{tag},\"gone\":true}}").as_bytes(),
    );
    out.push(b'\n');
    out
}

/// What the adapter needs from a frame: the stream's next offset, whether
/// it is up to date (else more is stored) and whether it is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameHead {
    pub next_offset: String,
    pub up_to_date: bool,
    pub closed: bool,
}

/// The head of a WebSocket-transport frame (its data is skipped, not
/// parsed into values).
pub fn frame_head(frame: &str) -> Option<FrameHead> {
    use serde_json::value::RawValue;
    let fields: std::collections::BTreeMap<&str, &RawValue> = serde_json::from_str(frame).ok()?;
    let get = |k: &str| fields.get(k).map(|v| v.get());
    Some(FrameHead {
        next_offset: serde_json::from_str(get("nextOffset")?).ok()?,
        up_to_date: serde_json::from_str(get("upToDate")?).ok()?,
        closed: serde_json::from_str(get("closed")?).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const O: &str = "0001760000000000_0000000000000005";

    #[test]
    fn parses_streams_in_order_with_their_offsets() {
        let q = format!("live=sse&s=-1%3Achat%2Fa&s=now:chat/b&s={O}:c%20d&token=x");
        let n = parse(&q, None).unwrap();
        let got: Vec<(&str, &str)> = n
            .iter()
            .map(|n| (n.path.as_str(), n.offset.as_str()))
            .collect();
        assert_eq!(got, [("chat/a", "-1"), ("chat/b", "now"), ("c d", O)]);
    }

    #[test]
    fn last_event_id_overrides_every_offset() {
        let q = "live=sse&s=-1:a&s=now:b";
        let id = format!("{O},{O}");
        let n = parse(q, Some(&id)).unwrap();
        assert!(n.iter().all(|n| n.offset == O));
        assert!(parse(q, Some(" ")).is_ok());
        for bad in [O.to_string(), format!("{O},now"), format!("{O},{O},{O}")] {
            assert_eq!(
                parse(q, Some(&bad)),
                Err(Invalid::MultiLastEventId.into()),
                "{bad}"
            );
        }
    }

    #[test]
    fn refuses_bad_requests() {
        let many: String = (0..=MAX_STREAMS).map(|i| format!("&s=-1:s{i}")).collect();
        let cases = [
            (
                "s=-1:a".to_string(),
                ProtocolError::from(Invalid::MultiLive),
            ),
            ("live=ws&s=-1:a".into(), Invalid::MultiLive.into()),
            ("live=sse".into(), Invalid::MultiStreams.into()),
            ("live=sse&s=a".into(), Invalid::MultiStreams.into()),
            (
                "live=sse&s=-1:a&s=now:a".into(),
                Invalid::MultiStreams.into(),
            ),
            ("live=sse&s=junk:a".into(), Invalid::Offset.into()),
            ("live=sse&s=-1:".into(), Invalid::Path.into()),
            ("live=sse&s=-1:a/../b".into(), Invalid::Path.into()),
            ("live=sse&s=-1:__ds/x".into(), Invalid::PathReserved.into()),
            (format!("live=sse{many}"), Invalid::MultiStreams.into()),
        ];
        for (q, e) in cases {
            assert_eq!(parse(&q, None), Err(e), "{q}");
        }
    }

    #[test]
    fn events_tag_frames_and_keep_line_breaks_inside_data_lines() {
        let path = StreamPath::parse("chat/a").unwrap();
        let frame =
            "{\"data\":[{\"a\":\n1}],\"nextOffset\":\"x\",\"upToDate\":true,\"closed\":false}";
        let e = String::from_utf8(event(&path, frame, "1,2").unwrap()).unwrap();
        assert_eq!(
            e,
            "id: 1,2\ndata:{\"stream\":\"chat/a\",\"data\":[{\"a\":\ndata:1}],\"nextOffset\":\"x\",\"upToDate\":true,\"closed\":false}\n\n"
        );
        assert_eq!(event(&path, "[]", "1"), None);
        let head = frame_head(frame).unwrap();
        assert_eq!(head.next_offset, "x");
        assert!(head.up_to_date && !head.closed);
        assert!(String::from_utf8(gone_event(&path, "1"))
            .unwrap()
            .contains("\"gone\":true"));
    }

    #[test]
    fn resume_ids_join_offsets() {
        assert_eq!(resume_id(["a", "b"]), "a,b");
    }
}
