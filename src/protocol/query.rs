//! Read parameters from the query string (PROTOCOL.md §5.6–§5.8): `offset`,
//! `live` and `cursor`. Unknown parameters are ignored (§11.1 extensions);
//! repeating `offset`, `live` or `cursor` is refused, since two values would
//! make the cache key ambiguous.

use super::error::Invalid;
use super::headers::query as q;
use super::offset::OffsetParam;

/// The read mode (§5.6 catch-up, §5.7 long-poll, §5.8 SSE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live {
    CatchUp,
    LongPoll,
    Sse,
    /// `live=ws`: a WebSocket reader (an extension, §11).
    Ws,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadQuery {
    /// `None` when the parameter is absent (equivalent to `-1` for catch-up).
    pub offset: Option<OffsetParam>,
    pub live: Live,
    pub cursor: Option<String>,
}

const MAX_CURSOR_LEN: usize = 64;

fn set_once(slot: &mut Option<String>, value: String, err: Invalid) -> Result<(), Invalid> {
    if slot.replace(value).is_some() {
        return Err(err);
    }
    Ok(())
}

impl ReadQuery {
    /// Parses a raw query string (without the leading `?`).
    pub fn parse(query: &str) -> Result<ReadQuery, Invalid> {
        let (mut offset, mut live, mut cursor) = (None, None, None);
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                q::OFFSET => set_once(&mut offset, v.into_owned(), Invalid::OffsetRepeated)?,
                q::LIVE => set_once(&mut live, v.into_owned(), Invalid::LiveMode)?,
                q::CURSOR => set_once(&mut cursor, v.into_owned(), Invalid::Cursor)?,
                _ => {}
            }
        }
        let offset = offset
            .map(|o| o.parse::<OffsetParam>().map_err(|_| Invalid::Offset))
            .transpose()?;
        let live = match live.as_deref() {
            None => Live::CatchUp,
            Some("long-poll") => Live::LongPoll,
            Some("sse") => Live::Sse,
            Some("ws") => Live::Ws,
            Some(_) => return Err(Invalid::LiveMode),
        };
        if let Some(c) = &cursor {
            let ok = !c.is_empty()
                && c.len() <= MAX_CURSOR_LEN
                && c.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(Invalid::Cursor);
            }
        }
        if live != Live::CatchUp && offset.is_none() {
            return Err(Invalid::OffsetMissingForLive);
        }
        Ok(ReadQuery {
            offset,
            live,
            cursor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::offset::{Offset, WireOffset};

    #[test]
    fn defaults_to_catch_up_from_the_start() {
        let r = ReadQuery::parse("").unwrap();
        assert_eq!(
            r,
            ReadQuery {
                offset: None,
                live: Live::CatchUp,
                cursor: None
            }
        );
    }

    #[test]
    fn parses_every_parameter() {
        let r = ReadQuery::parse(
            "cursor=12&live=long-poll&offset=0000000000000000_0000000000000003&x=1",
        )
        .unwrap();
        assert_eq!(
            r.offset,
            Some(OffsetParam::At(WireOffset::new(0, Offset::new(3).unwrap())))
        );
        assert_eq!(r.live, Live::LongPoll);
        assert_eq!(r.cursor.as_deref(), Some("12"));
    }

    #[test]
    fn refuses_bad_values() {
        assert_eq!(ReadQuery::parse("offset=0,1"), Err(Invalid::Offset));
        assert_eq!(ReadQuery::parse("offset=0%201"), Err(Invalid::Offset));
        assert_eq!(ReadQuery::parse("offset=0+1"), Err(Invalid::Offset));
        assert_eq!(ReadQuery::parse("offset="), Err(Invalid::Offset));
        assert_eq!(ReadQuery::parse("offset=%00"), Err(Invalid::Offset));
        assert_eq!(
            ReadQuery::parse("offset=-1&offset=-1"),
            Err(Invalid::OffsetRepeated)
        );
        assert_eq!(
            ReadQuery::parse("live=poll&offset=-1"),
            Err(Invalid::LiveMode)
        );
        assert_eq!(
            ReadQuery::parse("live=sse"),
            Err(Invalid::OffsetMissingForLive)
        );
        assert_eq!(ReadQuery::parse("offset=-1&cursor="), Err(Invalid::Cursor));
    }
}
