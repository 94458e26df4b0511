//! The wire formats of the twin: OpenAI completions and chat, and SGLang's native `/generate`.
//!
//! [`parse_request`] reads a request body into a [`GenerationRequest`] (input length, output length,
//! streaming options); a [`ResponseWriter`] turns the engine's [`Chunk`]s into server-sent events
//! (`data: {...}\n\n`, ending with `data: [DONE]`) or one JSON answer.
//! Input length is exact for token-id prompts and the number of whitespace-separated words for text.
//! Every request generates exactly its maximum number of tokens, as with `ignore_eos`; each token's
//! text is a short word, so every chunk carries text.

use serde_json::{json, Value};

use super::engine::Chunk;
use super::error::ServeError;

/// `max_tokens` of `/v1/completions` when the request gives none (OpenAI's and SGLang's default).
pub const DEFAULT_COMPLETION_TOKENS: u64 = 16;
/// Output tokens of chat and `/generate` requests that give no limit (the twin has no end-of-sequence token).
pub const DEFAULT_GENERATE_TOKENS: u64 = 128;

const TOKEN_WORDS: &[&str] = &[
    " the", " of", " and", " to", " in", " is", " that", " for", " it", " as", " with", " on", " by", " at", " from", " this", " be",
    " or", " an", " are", " model", " token", " time", " data",
];

/// Which API a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST /v1/completions`.
    Completions,
    /// `POST /v1/chat/completions`.
    Chat,
    /// SGLang's `POST /generate`.
    Generate,
}

/// What a request asks the engine for.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// The API it came through.
    pub api: Api,
    /// Input tokens.
    pub isl: u64,
    /// Output tokens to generate.
    pub osl: u64,
    /// Whether to stream server-sent events.
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with token counts.
    pub include_usage: bool,
    /// The model name to echo.
    pub model: String,
}

fn bad(message: impl Into<String>) -> ServeError {
    ServeError::BadRequest(message.into())
}

fn word_count(text: &str) -> u64 {
    (text.split_whitespace().count() as u64).max(1)
}

fn token_ids_len(values: &[Value], field: &str) -> Result<u64, ServeError> {
    if values.iter().all(|v| v.as_u64().is_some()) && !values.is_empty() {
        Ok(values.len() as u64)
    } else {
        Err(bad(format!("{field} must be a non-empty list of token ids")))
    }
}

fn positive_count(value: &Value, field: &str, default: u64) -> Result<u64, ServeError> {
    match value {
        Value::Null => Ok(default),
        other => match other.as_u64() {
            Some(count) if count > 0 => Ok(count),
            _ => Err(bad(format!("{field} must be a positive integer, got {other}"))),
        },
    }
}

fn flag(value: &Value, field: &str) -> Result<bool, ServeError> {
    match value {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(*b),
        other => Err(bad(format!("{field} must be true or false, got {other}"))),
    }
}

/// Reads a request body; `served_model` is echoed when the request names no model.
pub fn parse_request(api: Api, body: &[u8], served_model: &str) -> Result<GenerationRequest, ServeError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(bad("the body must be a JSON object"));
    }
    let model = value["model"].as_str().unwrap_or(served_model).to_string();
    let (isl, osl) = match api {
        Api::Completions => {
            let isl = match &value["prompt"] {
                Value::String(text) => word_count(text),
                Value::Array(items) => match items.as_slice() {
                    [Value::String(text)] => word_count(text),
                    [Value::Array(ids)] => token_ids_len(ids, "prompt")?,
                    _ => token_ids_len(items, "prompt")
                        .map_err(|_| bad("prompt must be a string or a list of token ids (batched prompts are not supported)"))?,
                },
                _ => return Err(bad("prompt is required: a string or a list of token ids")),
            };
            (isl, positive_count(&value["max_tokens"], "max_tokens", DEFAULT_COMPLETION_TOKENS)?)
        }
        Api::Chat => {
            let Some(messages) = value["messages"].as_array().filter(|m| !m.is_empty()) else {
                return Err(bad("messages is required: a non-empty list"));
            };
            let mut words = 0;
            for message in messages {
                words += match &message["content"] {
                    Value::String(text) => text.split_whitespace().count() as u64,
                    Value::Array(parts) => parts
                        .iter()
                        .filter_map(|p| p["text"].as_str())
                        .map(|t| t.split_whitespace().count() as u64)
                        .sum(),
                    Value::Null => 0,
                    other => return Err(bad(format!("message content must be text, got {other}"))),
                };
            }
            let limit = match &value["max_completion_tokens"] {
                Value::Null => &value["max_tokens"],
                given => given,
            };
            (words.max(1), positive_count(limit, "max_tokens", DEFAULT_GENERATE_TOKENS)?)
        }
        Api::Generate => {
            let isl = match (&value["input_ids"], &value["text"]) {
                (Value::Array(ids), _) => token_ids_len(ids, "input_ids")
                    .map_err(|_| bad("input_ids must be one list of token ids (batched requests are not supported)"))?,
                (Value::Null, Value::String(text)) => word_count(text),
                _ => return Err(bad("text or input_ids is required (one request; batches are not supported)")),
            };
            let osl = positive_count(
                &value["sampling_params"]["max_new_tokens"],
                "sampling_params.max_new_tokens",
                DEFAULT_GENERATE_TOKENS,
            )?;
            (isl, osl)
        }
    };
    check_single_choice(api, &value)?;
    Ok(GenerationRequest {
        api,
        isl,
        osl,
        stream: flag(&value["stream"], "stream")?,
        include_usage: flag(&value["stream_options"]["include_usage"], "stream_options.include_usage")?,
        model,
    })
}

/// `n` (choices per request; `sampling_params.n` for `/generate`): the twin answers one choice per
/// request, so any other count is refused rather than silently answered with one.
fn check_single_choice(api: Api, value: &Value) -> Result<(), ServeError> {
    let (field, n) = match api {
        Api::Generate => ("sampling_params.n", &value["sampling_params"]["n"]),
        Api::Completions | Api::Chat => ("n", &value["n"]),
    };
    match n {
        Value::Null => Ok(()),
        n if n.as_u64() == Some(1) => Ok(()),
        other => Err(bad(format!(
            "{field} = {other} is not supported: sglsim serve generates one choice per request (n = 1)"
        ))),
    }
}

/// SGLang's length check (`TokenizerManager._validate_one_request`) against the served context
/// window: an input as long as the window, or input plus output beyond it, is refused with
/// SGLang's own message (HTTP 400).
pub fn check_context(request: &GenerationRequest, context_tokens: u64) -> Result<(), ServeError> {
    crate::sim::limits::check_context(request.isl, request.osl, context_tokens).map_err(|e| bad(crate::sim::limits::strip_kind(e)))
}

/// The text of output token `index` of request `request_id`.
pub fn token_text(request_id: u64, index: u64) -> &'static str {
    TOKEN_WORDS[((request_id.wrapping_mul(7)).wrapping_add(index) % TOKEN_WORDS.len() as u64) as usize]
}

/// Formats one request's answer as the engine produces its chunks.
#[derive(Debug, Clone)]
pub struct ResponseWriter {
    request: GenerationRequest,
    request_id: u64,
    id: String,
    created_s: u64,
    text: String,
    streamed_tokens: u64,
}

impl ResponseWriter {
    /// A writer for request `request_id`; `created_s` is the Unix time the answer reports.
    pub fn new(request: GenerationRequest, request_id: u64, created_s: u64) -> ResponseWriter {
        let prefix = match request.api {
            Api::Completions => "cmpl",
            Api::Chat => "chatcmpl",
            Api::Generate => "gen",
        };
        ResponseWriter {
            id: format!("{prefix}-sglsim-{request_id}"),
            request,
            request_id,
            created_s,
            text: String::new(),
            streamed_tokens: 0,
        }
    }

    fn usage(&self, completion_tokens: u64) -> Value {
        json!({
            "prompt_tokens": self.request.isl,
            "completion_tokens": completion_tokens,
            "total_tokens": self.request.isl + completion_tokens,
        })
    }

    fn meta_info(&self, completion_tokens: u64, finished: bool) -> Value {
        json!({
            "id": self.id,
            "prompt_tokens": self.request.isl,
            "completion_tokens": completion_tokens,
            "cached_tokens": 0,
            "finish_reason": if finished { json!({"type": "length", "length": completion_tokens}) } else { Value::Null },
        })
    }

    /// The server-sent events for one chunk; the last chunk adds the usage chunk (when asked) and `[DONE]`.
    pub fn chunk_events(&mut self, chunk: &Chunk) -> String {
        let start = self.streamed_tokens;
        self.streamed_tokens = chunk.generated_tokens;
        let piece: String = (start..chunk.generated_tokens)
            .map(|index| token_text(self.request_id, index))
            .collect();
        self.text.push_str(&piece);
        let finish_reason = if chunk.finished { json!("length") } else { Value::Null };
        let mut events = Vec::new();
        match self.request.api {
            Api::Completions => events.push(json!({
                "id": self.id, "object": "text_completion", "created": self.created_s, "model": self.request.model,
                "choices": [{"index": 0, "text": piece, "logprobs": null, "finish_reason": finish_reason}],
            })),
            Api::Chat => {
                let delta = if start == 0 {
                    json!({"role": "assistant", "content": piece})
                } else {
                    json!({"content": piece})
                };
                events.push(json!({
                    "id": self.id, "object": "chat.completion.chunk", "created": self.created_s, "model": self.request.model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
                }));
            }
            Api::Generate => events.push(json!({
                "text": self.text,
                "meta_info": self.meta_info(chunk.generated_tokens, chunk.finished),
            })),
        }
        if chunk.finished && self.request.include_usage && self.request.api != Api::Generate {
            let object = if self.request.api == Api::Chat {
                "chat.completion.chunk"
            } else {
                "text_completion"
            };
            events.push(json!({
                "id": self.id, "object": object, "created": self.created_s, "model": self.request.model,
                "choices": [], "usage": self.usage(chunk.generated_tokens),
            }));
        }
        let mut out: String = events.iter().map(|event| format!("data: {event}\n\n")).collect();
        if chunk.finished {
            out.push_str("data: [DONE]\n\n");
        }
        out
    }

    /// The whole answer of a non-streaming request that generated `completion_tokens` tokens.
    pub fn full_response(&self, completion_tokens: u64) -> Value {
        let text: String = (0..completion_tokens).map(|index| token_text(self.request_id, index)).collect();
        match self.request.api {
            Api::Completions => json!({
                "id": self.id, "object": "text_completion", "created": self.created_s, "model": self.request.model,
                "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": "length"}],
                "usage": self.usage(completion_tokens),
            }),
            Api::Chat => json!({
                "id": self.id, "object": "chat.completion", "created": self.created_s, "model": self.request.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": "length"}],
                "usage": self.usage(completion_tokens),
            }),
            Api::Generate => json!({"text": text, "meta_info": self.meta_info(completion_tokens, true)}),
        }
    }
}

/// An error body as SGLang's OpenAI layer writes it.
pub fn error_body(message: &str, code: u16) -> Value {
    json!({"object": "error", "message": message, "type": "BadRequestError", "param": null, "code": code})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::time::SimTime;

    fn parse(api: Api, body: &str) -> Result<GenerationRequest, ServeError> {
        parse_request(api, body.as_bytes(), "served")
    }

    #[test]
    fn input_lengths_come_from_token_ids_or_words() {
        let request = parse(
            Api::Completions,
            r#"{"prompt":[1,2,3],"max_tokens":5,"stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert_eq!(
            (request.isl, request.osl, request.stream, request.include_usage),
            (3, 5, true, true)
        );
        assert_eq!(request.model, "served");
        assert_eq!(parse(Api::Completions, r#"{"prompt":"a b  c d","model":"m"}"#).unwrap().isl, 4);
        assert_eq!(parse(Api::Completions, r#"{"prompt":"x"}"#).unwrap().osl, DEFAULT_COMPLETION_TOKENS);
        let chat = parse(
            Api::Chat,
            r#"{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"one two three"}]}],"max_completion_tokens":7}"#,
        )
        .unwrap();
        assert_eq!((chat.isl, chat.osl), (5, 7));
        let generate = parse(Api::Generate, r#"{"input_ids":[5,6],"sampling_params":{"max_new_tokens":9}}"#).unwrap();
        assert_eq!((generate.isl, generate.osl), (2, 9));
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        for (api, body, needle) in [
            (Api::Completions, "not json", "not JSON"),
            (Api::Completions, r#"{"max_tokens":3}"#, "prompt is required"),
            (Api::Completions, r#"{"prompt":["a","b"]}"#, "batched"),
            (Api::Completions, r#"{"prompt":[1],"max_tokens":-1}"#, "max_tokens"),
            (Api::Chat, r#"{"messages":[]}"#, "messages"),
            (Api::Generate, r#"{"input_ids":[[1],[2]]}"#, "batched"),
            (Api::Generate, r#"{"text":"a","stream":"yes"}"#, "stream"),
            (Api::Completions, r#"{"prompt":"a","n":5}"#, "n = 5 is not supported"),
            (Api::Chat, r#"{"messages":[{"role":"user","content":"a"}],"n":2}"#, "one choice"),
            (Api::Generate, r#"{"text":"a","sampling_params":{"n":3}}"#, "sampling_params.n = 3"),
            (Api::Completions, r#"{"prompt":"a","max_tokens":1e12}"#, "max_tokens"),
        ] {
            let error = parse(api, body).unwrap_err().to_string();
            assert!(error.contains(needle), "{body}: {error}");
        }
    }

    #[test]
    fn one_choice_is_accepted_and_lengths_follow_sglangs_context_rule() {
        assert!(parse(Api::Completions, r#"{"prompt":"a","n":1}"#).is_ok());
        // Qwen3-8B's 40,960-token window: a 50,000-token prompt and a 1e12-token completion are refused.
        let long = parse(Api::Completions, &format!(r#"{{"prompt":{:?},"max_tokens":8}}"#, vec![1; 50_000])).unwrap();
        let error = check_context(&long, 40_960).unwrap_err().to_string();
        assert!(
            error.contains("The input (50000 tokens) is longer than the model's context length (40960 tokens)."),
            "{error}"
        );
        let greedy = parse(Api::Completions, r#"{"prompt":[1,2],"max_tokens":1000000000000}"#).unwrap();
        let error = check_context(&greedy, 40_960).unwrap_err().to_string();
        assert!(error.contains("You requested a total of 1000000000002 tokens"), "{error}");
        let fits = parse(Api::Completions, r#"{"prompt":[1,2],"max_tokens":40958}"#).unwrap();
        assert!(check_context(&fits, 40_960).is_ok());
    }

    #[test]
    fn streams_end_with_usage_and_done() {
        let request = parse(
            Api::Completions,
            r#"{"prompt":[1,2],"max_tokens":3,"stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        let mut writer = ResponseWriter::new(request, 4, 0);
        let chunk = |generated_tokens, finished| Chunk {
            request_id: 4,
            n_tokens: 1,
            generated_tokens,
            finished,
            at: SimTime::ZERO,
        };
        let first = writer.chunk_events(&chunk(1, false));
        assert!(first.starts_with("data: {") && first.ends_with("\n\n") && !first.contains("[DONE]"));
        let last = writer.chunk_events(&chunk(3, true));
        let events: Vec<&str> = last.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 3, "{last}");
        let content: Value = serde_json::from_str(&events[0]["data: ".len()..]).unwrap();
        assert_eq!(content["choices"][0]["finish_reason"], "length");
        assert_eq!(content["choices"][0]["text"].as_str().unwrap().split_whitespace().count(), 2);
        let usage: Value = serde_json::from_str(&events[1]["data: ".len()..]).unwrap();
        assert_eq!(usage["usage"]["completion_tokens"], 3);
        assert_eq!(events[2], "data: [DONE]");
    }
}
