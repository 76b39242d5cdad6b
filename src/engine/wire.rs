//! The messages between a fork's object and its source's (see
//! `cloudflare/forks.rs` for the protocol): acquire and release as small
//! JSON objects, chunks as frames. Pure encode/decode, tested on the host.
//!
//! Chunk frame: `start: u64 BE | flags: u8 | len: u32 BE | data[len]`,
//! flags bit 0 head boundary, bit 1 tail boundary, bit 2 append end.

use super::fork::{Acquire, Acquired};
use super::state::Chunk;
use crate::protocol::content_type::ContentType;
use crate::protocol::expiry::Expiry;
use crate::protocol::offset::Offset;
#[cfg(test)]
use crate::protocol::offset::WireOffset;
use serde_json::{json, Value};

const HEAD: u8 = 1;
const TAIL: u8 = 2;
const APPEND_END: u8 = 4;

pub fn encode_chunks(chunks: &[Chunk]) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunks.iter().map(|c| c.data.len() + 13).sum());
    for c in chunks {
        let flags = (if c.head_boundary { HEAD } else { 0 })
            | (if c.tail_boundary { TAIL } else { 0 })
            | (if c.append_end { APPEND_END } else { 0 });
        out.extend_from_slice(&c.start.to_be_bytes());
        out.push(flags);
        out.extend_from_slice(
            &u32::try_from(c.data.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        out.extend_from_slice(&c.data);
    }
    out
}

/// `None` when the frames are malformed.
pub fn decode_chunks(mut bytes: &[u8]) -> Option<Vec<Chunk>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (start, rest) = bytes.split_first_chunk::<8>()?;
        let (flags, rest) = rest.split_first()?;
        let (len, rest) = rest.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        let data = rest.get(..len)?;
        out.push(Chunk {
            start: u64::from_be_bytes(*start),
            data: data.to_vec(),
            head_boundary: flags & HEAD != 0,
            tail_boundary: flags & TAIL != 0,
            append_end: flags & APPEND_END != 0,
            // Inherited data is the source's to trim: no times or counts.
            at_ms: 0,
            count: 0,
        });
        bytes = rest.get(len..)?;
    }
    Some(out)
}

pub fn encode_acquire(a: &Acquire) -> Vec<u8> {
    json!({
        "forkPath": a.fork_path,
        "forkId": a.fork_id,
        "offset": a.offset.map(|o| o.to_string()),
        "subOffset": a.sub_offset,
        "contentType": a.content_type.as_ref().map(|c| c.as_str().to_string()),
    })
    .to_string()
    .into_bytes()
}

pub fn decode_acquire(bytes: &[u8]) -> Option<Acquire> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    Some(Acquire {
        fork_path: v.get("forkPath")?.as_str()?.to_string(),
        fork_id: v.get("forkId")?.as_str()?.to_string(),
        offset: match v.get("offset")? {
            Value::Null => None,
            o => Some(o.as_str()?.parse().ok()?),
        },
        sub_offset: v.get("subOffset")?.as_u64()?,
        content_type: match v.get("contentType")? {
            Value::Null => None,
            c => Some(ContentType::parse(c.as_str()?).ok()?),
        },
    })
}

pub fn encode_acquired(a: &Acquired) -> Vec<u8> {
    let (ttl, at_ms, at_text) = match &a.expiry {
        Expiry::Never => (None, None, None),
        Expiry::Ttl { secs } => (Some(*secs), None, None),
        Expiry::At { ms, text } => (None, Some(*ms), Some(text.clone())),
    };
    json!({
        "offset": a.offset.position(),
        "point": a.point.position(),
        "generation": a.generation,
        "ancestors": a.ancestors,
        "contentType": a.content_type.as_str(),
        "ttl": ttl,
        "expiresAtMs": at_ms,
        "expiresAtText": at_text,
        "sourceId": a.source_id,
    })
    .to_string()
    .into_bytes()
}

pub fn decode_acquired(bytes: &[u8]) -> Option<Acquired> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let expiry = match (
        v.get("ttl")?.as_u64(),
        v.get("expiresAtMs")?.as_i64(),
        v.get("expiresAtText")?.as_str(),
    ) {
        (Some(secs), _, _) => Expiry::Ttl { secs },
        (None, Some(ms), Some(text)) => Expiry::At {
            ms,
            text: text.to_string(),
        },
        _ => Expiry::Never,
    };
    Some(Acquired {
        offset: Offset::new(v.get("offset")?.as_u64()?)?,
        point: Offset::new(v.get("point")?.as_u64()?)?,
        generation: v.get("generation")?.as_u64()?,
        ancestors: v
            .get("ancestors")?
            .as_array()?
            .iter()
            .map(|pair| Some((pair.get(0)?.as_u64()?, pair.get(1)?.as_u64()?)))
            .collect::<Option<Vec<_>>>()?,
        content_type: ContentType::parse(v.get("contentType")?.as_str()?).ok()?,
        expiry,
        source_id: v.get("sourceId")?.as_str()?.to_string(),
    })
}

pub fn encode_release(fork_id: &str) -> Vec<u8> {
    json!({ "forkId": fork_id }).to_string().into_bytes()
}

pub fn decode_release(bytes: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    Some(v.get("forkId")?.as_str()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip() {
        let chunks = vec![
            Chunk {
                start: 7,
                data: b"abc".to_vec(),
                head_boundary: true,
                tail_boundary: false,
                append_end: false,
                at_ms: 0,
                count: 0,
            },
            Chunk {
                start: 10,
                data: vec![],
                head_boundary: false,
                tail_boundary: true,
                append_end: true,
                at_ms: 0,
                count: 0,
            },
        ];
        assert_eq!(decode_chunks(&encode_chunks(&chunks)), Some(chunks));
        assert_eq!(decode_chunks(b""), Some(vec![]));
    }

    #[test]
    fn truncated_frames_are_refused() {
        let bytes = encode_chunks(&[Chunk {
            start: 0,
            data: b"abcdef".to_vec(),
            head_boundary: true,
            tail_boundary: true,
            append_end: true,
            at_ms: 0,
            count: 0,
        }]);
        for cut in 1..bytes.len() {
            assert_eq!(decode_chunks(&bytes[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn acquire_round_trips() {
        let a = Acquire {
            fork_path: "a/b".into(),
            fork_id: "id1".into(),
            offset: Some(WireOffset::new(12, Offset::new(9).unwrap())),
            sub_offset: 3,
            content_type: Some(ContentType::parse("application/json").unwrap()),
        };
        assert_eq!(decode_acquire(&encode_acquire(&a)), Some(a.clone()));
        let none = Acquire {
            offset: None,
            content_type: None,
            ..a
        };
        assert_eq!(decode_acquire(&encode_acquire(&none)), Some(none));
        let got = Acquired {
            offset: Offset::new(3).unwrap(),
            point: Offset::new(5).unwrap(),
            content_type: ContentType::parse("text/plain").unwrap(),
            expiry: Expiry::At {
                ms: 99,
                text: "x".into(),
            },
            source_id: "s".into(),
            generation: 4,
            ancestors: vec![(1, 10), (2, 20)],
        };
        assert_eq!(decode_acquired(&encode_acquired(&got)), Some(got));
        assert_eq!(decode_release(&encode_release("i")), Some("i".into()));
        assert_eq!(decode_acquire(b"{}"), None);
    }
}
