//! Server-sent events as PROTOCOL.md §5.8 sends them: `event: data` (the
//! bytes; base64 for binary streams) and `event: control` (the next offset,
//! cursor, up-to-date and closed flags). Fed bytes in any cuts.

use base64::Engine as _;

/// One parsed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Data(Vec<u8>),
    Control {
        next_offset: String,
        cursor: Option<String>,
        up_to_date: bool,
        closed: bool,
    },
}

/// The longest event accepted (a bound on memory).
const MAX_EVENT: usize = 64 * 1024 * 1024;

#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    event: String,
    data: Vec<u8>,
    has_data: bool,
    base64: bool,
}

impl Parser {
    pub fn new(base64: bool) -> Parser {
        Parser {
            base64,
            ..Parser::default()
        }
    }

    /// Feeds bytes; returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Event>, String> {
        let mut out = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                if self.line.len() > MAX_EVENT {
                    return Err("an SSE line is too long".into());
                }
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.is_empty() {
                if let Some(e) = self.dispatch()? {
                    out.push(e);
                }
                continue;
            }
            let (field, value) = match line.iter().position(|c| *c == b':') {
                Some(0) => continue, // a comment
                Some(i) => {
                    let v = &line[i + 1..];
                    (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (&line[..], &b""[..]),
            };
            match field {
                b"event" => self.event = String::from_utf8_lossy(value).into_owned(),
                b"data" => {
                    if self.has_data {
                        self.data.push(b'\n');
                    }
                    self.data.extend_from_slice(value);
                    self.has_data = true;
                    if self.data.len() > MAX_EVENT {
                        return Err("an SSE event is too long".into());
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    fn dispatch(&mut self) -> Result<Option<Event>, String> {
        let event = std::mem::take(&mut self.event);
        let data = std::mem::take(&mut self.data);
        let had = std::mem::replace(&mut self.has_data, false);
        if !had {
            return Ok(None);
        }
        match event.as_str() {
            "data" => {
                let bytes = if self.base64 {
                    let text: Vec<u8> = data.into_iter().filter(|b| *b != b'\n').collect();
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .map_err(|_| "bad base64 in an SSE data event".to_string())?
                } else {
                    data
                };
                Ok(Some(Event::Data(bytes)))
            }
            "control" => {
                let v: serde_json::Value = serde_json::from_slice(&data)
                    .map_err(|_| "a control event is not JSON".to_string())?;
                let next_offset = v
                    .get("streamNextOffset")
                    .and_then(|o| o.as_str())
                    .ok_or("a control event without streamNextOffset")?
                    .to_string();
                if v.get("error").is_some() {
                    return Err(format!(
                        "the server ended the reader: {}",
                        v.get("error").map(|e| e.to_string()).unwrap_or_default()
                    ));
                }
                Ok(Some(Event::Control {
                    next_offset,
                    cursor: v
                        .get("streamCursor")
                        .and_then(|c| c.as_str())
                        .map(str::to_string),
                    up_to_date: v.get("upToDate").and_then(|b| b.as_bool()) == Some(true),
                    closed: v.get("streamClosed").and_then(|b| b.as_bool()) == Some(true),
                }))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_in_any_cuts() {
        let wire = b"event: data\ndata: hello\ndata: world\n\n: keep-alive\n\nevent: control\r\ndata: {\"streamNextOffset\":\"1_2\",\"upToDate\":true}\r\n\r\n";
        for cut in 0..wire.len() {
            let mut p = Parser::new(false);
            let mut events = p.feed(&wire[..cut]).unwrap();
            events.extend(p.feed(&wire[cut..]).unwrap());
            assert_eq!(
                events,
                vec![
                    Event::Data(b"hello\nworld".to_vec()),
                    Event::Control {
                        next_offset: "1_2".into(),
                        cursor: None,
                        up_to_date: true,
                        closed: false
                    }
                ]
            );
        }
        let mut b = Parser::new(true);
        assert_eq!(
            b.feed(b"event: data\ndata: AAEC\n\n").unwrap(),
            vec![Event::Data(vec![0, 1, 2])]
        );
    }
}
