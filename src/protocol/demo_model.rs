//! The demo model's answer (README.md, Resumable AI responses): an
//! OpenAI-compatible chat-completions stream with deterministic tokens, so
//! the demo and its tests run offline through the same proxy code as a real
//! provider. Pure: the events; the adapter paces them.

use serde_json::json;

/// The fixed part of every answer.
const PASSAGE: &str = "Durable Streams keeps every token of this answer in a stream with its own \
URL. Close the tab, lose the network or reload the page: the reader asks for the stream again \
from the last offset it saw and continues exactly there, with no token lost and none repeated. \
Any number of tabs can watch the same answer live, and anyone can replay it from the start. \
When the model finishes, a final message carries the whole output and its token counts.";

/// The answer to `prompt`, cut into tokens (each word with the space
/// before it).
pub fn tokens(prompt: &str) -> Vec<String> {
    let asked: String = prompt.split_whitespace().collect::<Vec<_>>().join(" ");
    let asked: String = asked.chars().take(80).collect();
    let text = if asked.is_empty() {
        PASSAGE.to_string()
    } else {
        format!("You asked: \"{asked}\". {PASSAGE}")
    };
    let mut out: Vec<String> = Vec::new();
    for (i, word) in text.split(' ').enumerate() {
        out.push(if i == 0 {
            word.to_string()
        } else {
            format!(" {word}")
        });
    }
    out
}

/// The server-sent events of the answer to `prompt`: one chunk per token,
/// a finishing chunk, a usage chunk and `[DONE]`.
pub fn events(prompt: &str, model: &str) -> Vec<String> {
    let tokens = tokens(prompt);
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        json!({
            "id": "chatcmpl-demo",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    let mut out: Vec<String> = tokens
        .iter()
        .map(|t| chunk(json!({ "content": t }), None).to_string())
        .collect();
    out.push(chunk(json!({}), Some("stop")).to_string());
    let prompt_tokens = prompt.split_whitespace().count().max(1);
    out.push(
        json!({
            "id": "chatcmpl-demo",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": tokens.len(),
                "total_tokens": prompt_tokens + tokens.len(),
            },
        })
        .to_string(),
    );
    out.push("[DONE]".into());
    out.into_iter().map(|d| format!("data: {d}\n\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::proxy::{parse_event, Event, SseReader};

    #[test]
    fn the_answer_is_deterministic_and_parses_back() {
        assert_eq!(events("hi  there", "demo"), events("hi  there", "demo"));
        let mut r = SseReader::default();
        let mut text = String::new();
        let mut finished = false;
        for e in events("hi there", "demo") {
            for d in r.feed(e.as_bytes()).unwrap() {
                for ev in parse_event(&d) {
                    match ev {
                        Event::Delta(t) => text.push_str(&t),
                        Event::Finish(f) => finished = f == "stop",
                        _ => {}
                    }
                }
            }
        }
        assert!(finished);
        assert_eq!(text, tokens("hi there").concat());
        assert!(text.starts_with("You asked: \"hi there\". Durable Streams"));
    }
}
