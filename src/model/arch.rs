//! Model architectures read from a Hugging Face `config.json`.
//!
//! [`ModelSpec::from_hf_config`] validates the config once and turns it into plain numbers:
//! the attention kind (GQA/MHA or DeepSeek's MLA), sliding-window layers, dense or MoE
//! feed-forward layers, and the checkpoint's weight format. Everything downstream reads
//! only these fields.

use serde_json::Value;

use super::error::{Error, Result};
use super::quant::WeightDtype;

/// The attention of one layer.
#[derive(Debug, Clone, PartialEq)]
pub enum Attention {
    /// Grouped-query (or multi-head when `n_kv_heads == n_heads`) attention.
    Gqa {
        /// Query heads.
        n_heads: u64,
        /// Key/value heads.
        n_kv_heads: u64,
        /// Dimension of one head.
        head_dim: u64,
    },
    /// DeepSeek's multi-head latent attention.
    Mla {
        /// Query heads.
        n_heads: u64,
        /// Rank of the query down-projection; `None` when queries are projected directly.
        q_lora_rank: Option<u64>,
        /// Rank of the compressed KV latent (what the cache stores, with the rope part).
        kv_lora_rank: u64,
        /// Per-head query/key dimension without rotary embedding.
        qk_nope_head_dim: u64,
        /// Per-head rotary dimension (shared across heads in the cache).
        qk_rope_head_dim: u64,
        /// Per-head value dimension.
        v_head_dim: u64,
    },
}

impl Attention {
    /// Query heads.
    pub fn n_heads(&self) -> u64 {
        match self {
            Attention::Gqa { n_heads, .. } | Attention::Mla { n_heads, .. } => *n_heads,
        }
    }
}

/// Sliding-window attention on some layers (gpt-oss alternates sliding and full layers).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlidingWindow {
    /// Window length, tokens.
    pub window_tokens: u64,
    /// How many of the layers use the window; the rest attend to the full context.
    pub n_sliding_layers: u64,
}

/// Mixture-of-experts feed-forward layers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moe {
    /// Routed experts per MoE layer.
    pub n_experts: u64,
    /// Experts each token is routed to.
    pub top_k: u64,
    /// Intermediate size of one routed expert.
    pub expert_intermediate: u64,
    /// Intermediate size of the always-on shared expert(s), 0 when there are none.
    pub shared_intermediate: u64,
    /// Leading layers that use a dense MLP instead of MoE (DeepSeek's `first_k_dense_replace`).
    pub n_dense_layers: u64,
}

/// Weight formats of each part of the network (checkpoints often leave attention unquantised).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightFormats {
    /// Attention projections.
    pub attention: WeightDtype,
    /// Dense MLP and shared experts.
    pub dense_mlp: WeightDtype,
    /// Routed experts.
    pub experts: WeightDtype,
}

impl WeightFormats {
    /// Every linear layer in one format.
    pub fn uniform(dtype: WeightDtype) -> WeightFormats {
        WeightFormats {
            attention: dtype,
            dense_mlp: dtype,
            experts: dtype,
        }
    }

    /// The narrowest format used anywhere, which names the checkpoint (`fp8`, `mxfp4`, ...).
    pub fn headline(&self) -> WeightDtype {
        [self.attention, self.dense_mlp, self.experts]
            .into_iter()
            .min_by(|a, b| a.bytes_per_param().total_cmp(&b.bytes_per_param()))
            .unwrap_or(self.attention)
    }
}

/// A transformer decoder, as the cost model sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// The id or path the user gave.
    pub name: String,
    /// `architectures[0]` of the config.
    pub architecture: String,
    /// Residual stream width.
    pub hidden_size: u64,
    /// Decoder layers.
    pub n_layers: u64,
    /// Vocabulary size.
    pub vocab_size: u64,
    /// Whether the LM head shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Attention of every layer.
    pub attention: Attention,
    /// Sliding-window layers, if any.
    pub sliding_window: Option<SlidingWindow>,
    /// Intermediate size of the dense MLP layers (all layers of a dense model).
    pub dense_intermediate: u64,
    /// MoE layers, if any.
    pub moe: Option<Moe>,
    /// Checkpoint weight formats.
    pub weights: WeightFormats,
    /// `max_position_embeddings`: SGLang's default context length, tokens.
    pub max_context_tokens: u64,
}

impl ModelSpec {
    /// Parses a Hugging Face `config.json` text; `path` names it in errors.
    pub fn from_hf_config(name: &str, text: &str, path: &str) -> Result<ModelSpec> {
        let config: Value = serde_json::from_str(text).map_err(|e| Error::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        let fields = Fields { config: &config, path };
        if !config.is_object() {
            return Err(Error::Parse {
                path: path.into(),
                message: "expected a JSON object".into(),
            });
        }
        let architecture = config
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str)
            .unwrap_or_else(|| config.get("model_type").and_then(Value::as_str).unwrap_or("unknown"))
            .to_string();
        let hidden_size = fields.required_u64("hidden_size")?;
        let n_layers = fields.required_u64("num_hidden_layers")?;
        let vocab_size = fields.required_u64("vocab_size")?;
        let n_heads = fields.required_u64("num_attention_heads")?;
        let attention = if config.get("kv_lora_rank").is_some_and(|v| !v.is_null()) {
            Attention::Mla {
                n_heads,
                q_lora_rank: fields.optional_u64("q_lora_rank")?,
                kv_lora_rank: fields.required_u64("kv_lora_rank")?,
                qk_nope_head_dim: fields.required_u64("qk_nope_head_dim")?,
                qk_rope_head_dim: fields.required_u64("qk_rope_head_dim")?,
                v_head_dim: fields.required_u64("v_head_dim")?,
            }
        } else {
            let n_kv_heads = fields.optional_u64("num_key_value_heads")?.unwrap_or(n_heads);
            let head_dim = match fields.optional_u64("head_dim")? {
                Some(head_dim) => head_dim,
                None => {
                    if hidden_size % n_heads != 0 {
                        return Err(fields.bad(
                            "head_dim",
                            format!("is absent and hidden_size {hidden_size} is not a multiple of num_attention_heads {n_heads}"),
                        ));
                    }
                    hidden_size / n_heads
                }
            };
            if n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
                return Err(fields.bad(
                    "num_key_value_heads",
                    format!("is {n_kv_heads}; must divide num_attention_heads {n_heads}"),
                ));
            }
            Attention::Gqa {
                n_heads,
                n_kv_heads,
                head_dim,
            }
        };
        let sliding_window = parse_sliding_window(&fields, n_layers)?;
        let moe = parse_moe(&fields, n_layers)?;
        let dense_intermediate = match (fields.optional_u64("intermediate_size")?, &moe) {
            (Some(size), _) => size,
            (None, Some(_)) => 0,
            (None, None) => return Err(fields.bad("intermediate_size", "is missing".into())),
        };
        let weights = parse_quantization(&fields)?;
        Ok(ModelSpec {
            name: name.to_string(),
            architecture,
            hidden_size,
            n_layers,
            vocab_size,
            tie_word_embeddings: config.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(false),
            attention,
            sliding_window,
            dense_intermediate,
            moe,
            weights,
            max_context_tokens: fields.optional_u64("max_position_embeddings")?.unwrap_or(131_072),
        })
    }

    /// Layers with a dense MLP.
    pub fn n_dense_mlp_layers(&self) -> u64 {
        match &self.moe {
            Some(moe) => moe.n_dense_layers,
            None => self.n_layers,
        }
    }

    /// Layers with an MoE block.
    pub fn n_moe_layers(&self) -> u64 {
        self.n_layers - self.n_dense_mlp_layers()
    }

    /// Parameters of one layer's attention projections (whole model, not per rank).
    pub fn attention_params_per_layer(&self) -> f64 {
        let hidden = self.hidden_size as f64;
        match self.attention {
            Attention::Gqa {
                n_heads,
                n_kv_heads,
                head_dim,
            } => hidden * ((n_heads + 2 * n_kv_heads) * head_dim) as f64 + (n_heads * head_dim) as f64 * hidden,
            Attention::Mla {
                n_heads,
                q_lora_rank,
                kv_lora_rank,
                qk_nope_head_dim,
                qk_rope_head_dim,
                v_head_dim,
            } => {
                let qk_head_dim = (qk_nope_head_dim + qk_rope_head_dim) as f64;
                let heads = n_heads as f64;
                let q_params = match q_lora_rank {
                    Some(rank) => hidden * rank as f64 + rank as f64 * heads * qk_head_dim,
                    None => hidden * heads * qk_head_dim,
                };
                let kv_a = hidden * (kv_lora_rank + qk_rope_head_dim) as f64;
                let kv_b = kv_lora_rank as f64 * heads * (qk_nope_head_dim + v_head_dim) as f64;
                let o_proj = heads * v_head_dim as f64 * hidden;
                q_params + kv_a + kv_b + o_proj
            }
        }
    }

    /// Parameters of one dense SwiGLU MLP (gate, up, down).
    pub fn dense_mlp_params(&self) -> f64 {
        3.0 * self.hidden_size as f64 * self.dense_intermediate as f64
    }

    /// Parameters of one routed expert (gate, up, down).
    pub fn expert_params(&self) -> f64 {
        self.moe
            .map_or(0.0, |moe| 3.0 * self.hidden_size as f64 * moe.expert_intermediate as f64)
    }

    /// Parameters of the shared expert(s) of one MoE layer.
    pub fn shared_expert_params(&self) -> f64 {
        self.moe
            .map_or(0.0, |moe| 3.0 * self.hidden_size as f64 * moe.shared_intermediate as f64)
    }

    /// Embedding plus LM-head parameters.
    pub fn embedding_params(&self) -> f64 {
        let one = (self.vocab_size * self.hidden_size) as f64;
        if self.tie_word_embeddings {
            one
        } else {
            2.0 * one
        }
    }

    /// Total parameters (MTP/next-n layers excluded, as SGLang loads them only for speculative decoding).
    pub fn total_params(&self) -> f64 {
        let moe_layer = match &self.moe {
            Some(moe) => {
                moe.n_experts as f64 * self.expert_params() + self.shared_expert_params() + (self.hidden_size * moe.n_experts) as f64
            }
            None => 0.0,
        };
        self.n_layers as f64 * self.attention_params_per_layer()
            + self.n_dense_mlp_layers() as f64 * self.dense_mlp_params()
            + self.n_moe_layers() as f64 * moe_layer
            + self.embedding_params()
    }

    /// Parameters touched per token (routed experts counted top-k times).
    pub fn active_params(&self) -> f64 {
        let moe_layer = match &self.moe {
            Some(moe) => moe.top_k as f64 * self.expert_params() + self.shared_expert_params(),
            None => 0.0,
        };
        self.n_layers as f64 * self.attention_params_per_layer()
            + self.n_dense_mlp_layers() as f64 * self.dense_mlp_params()
            + self.n_moe_layers() as f64 * moe_layer
            + self.embedding_params()
    }
}

/// Largest integer a config.json field may hold: 2^24. The largest in any published config is
/// Llama 4 Scout's 10,485,760-token `max_position_embeddings`; bounding every field here keeps the
/// products of sizes the cost model forms (heads × head dim × hidden, vocabulary × hidden) inside `u64`.
pub const MAX_CONFIG_INTEGER: u64 = 1 << 24;

struct Fields<'a> {
    config: &'a Value,
    path: &'a str,
}

impl Fields<'_> {
    fn bad(&self, field: &str, problem: String) -> Error {
        Error::BadField {
            path: self.path.into(),
            field: field.into(),
            problem,
        }
    }

    /// A positive integer field no larger than [`MAX_CONFIG_INTEGER`], or `None` when absent or null.
    fn optional_u64(&self, field: &str) -> Result<Option<u64>> {
        match self.config.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => match value.as_u64() {
                Some(0) => Err(self.bad(field, "is 0; expected a positive integer".into())),
                Some(number) if number > MAX_CONFIG_INTEGER => Err(self.bad(
                    field,
                    format!("is {number}; expected at most {MAX_CONFIG_INTEGER}, above any published model's"),
                )),
                Some(number) => Ok(Some(number)),
                None => Err(self.bad(field, format!("is {value}; expected a positive integer"))),
            },
        }
    }

    fn required_u64(&self, field: &str) -> Result<u64> {
        self.optional_u64(field)?
            .ok_or_else(|| self.bad(field, "is missing; expected a positive integer".into()))
    }
}

fn parse_sliding_window(fields: &Fields<'_>, n_layers: u64) -> Result<Option<SlidingWindow>> {
    let config = fields.config;
    if let Some(layer_types) = config.get("layer_types").and_then(Value::as_array) {
        let n_sliding = layer_types.iter().filter(|t| t.as_str() == Some("sliding_attention")).count() as u64;
        if n_sliding == 0 {
            return Ok(None);
        }
        let window_tokens = fields.required_u64("sliding_window")?;
        return Ok(Some(SlidingWindow {
            window_tokens,
            n_sliding_layers: n_sliding.min(n_layers),
        }));
    }
    // Qwen2/Qwen3 carry a `sliding_window` that is inactive unless `use_sliding_window` is true;
    // Mistral-style configs use it on every layer.
    let explicit_off = config.get("use_sliding_window").and_then(Value::as_bool) == Some(false);
    match fields.optional_u64("sliding_window")? {
        Some(window_tokens) if !explicit_off => Ok(Some(SlidingWindow {
            window_tokens,
            n_sliding_layers: n_layers,
        })),
        _ => Ok(None),
    }
}

fn parse_moe(fields: &Fields<'_>, n_layers: u64) -> Result<Option<Moe>> {
    let n_experts = match fields.optional_u64("n_routed_experts")? {
        Some(n) => Some(n),
        None => match fields.optional_u64("num_local_experts")? {
            Some(n) => Some(n),
            None => fields.optional_u64("num_experts")?,
        },
    };
    let Some(n_experts) = n_experts else { return Ok(None) };
    let top_k = match fields.optional_u64("num_experts_per_tok")? {
        Some(k) => k,
        None => fields
            .optional_u64("experts_per_token")?
            .ok_or_else(|| fields.bad("num_experts_per_tok", "is missing in an MoE config".into()))?,
    };
    if top_k > n_experts {
        return Err(fields.bad("num_experts_per_tok", format!("is {top_k}, more than the {n_experts} experts")));
    }
    let expert_intermediate = match fields.optional_u64("moe_intermediate_size")? {
        Some(size) => size,
        None => fields.required_u64("intermediate_size")?,
    };
    let shared_intermediate = match fields.optional_u64("shared_expert_intermediate_size")? {
        Some(size) => size,
        None => fields.optional_u64("n_shared_experts")?.unwrap_or(0) * expert_intermediate,
    };
    let mut n_dense_layers = fields.optional_u64("first_k_dense_replace")?.unwrap_or(0);
    if let Some(list) = fields.config.get("mlp_only_layers").and_then(Value::as_array) {
        n_dense_layers += list.len() as u64;
    }
    if n_dense_layers > n_layers {
        return Err(fields.bad(
            "first_k_dense_replace",
            format!("is {n_dense_layers}, more than the {n_layers} layers"),
        ));
    }
    Ok(Some(Moe {
        n_experts,
        top_k,
        expert_intermediate,
        shared_intermediate,
        n_dense_layers,
    }))
}

fn parse_quantization(fields: &Fields<'_>) -> Result<WeightFormats> {
    let Some(quant) = fields.config.get("quantization_config").filter(|q| !q.is_null()) else {
        return Ok(WeightFormats::uniform(WeightDtype::Bf16));
    };
    let method = quant.get("quant_method").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
    let dtype = match method.as_str() {
        "fp8" => {
            if quant.get("weight_block_size").is_some_and(|v| !v.is_null()) {
                WeightDtype::Fp8Block
            } else {
                WeightDtype::Fp8PerTensor
            }
        }
        "mxfp4" => WeightDtype::Mxfp4,
        "modelopt_fp4" | "nvfp4" => WeightDtype::Nvfp4,
        "modelopt" | "modelopt_fp8" | "compressed-tensors" | "fbgemm_fp8" => WeightDtype::Fp8PerTensor,
        other => {
            return Err(Error::BadField {
                path: fields.path.into(),
                field: "quantization_config.quant_method".into(),
                problem: format!("is '{other}'; supported: fp8, mxfp4, modelopt_fp4/nvfp4, modelopt, compressed-tensors (or pass --dtype)"),
            })
        }
    };
    let skipped: Vec<String> = quant
        .get("modules_to_not_convert")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    let attention_skipped = skipped.iter().any(|module| module.contains("self_attn") || module.contains("attn"));
    let mlp_skipped = skipped
        .iter()
        .any(|module| module.ends_with(".mlp") || module.contains("shared_expert"));
    Ok(WeightFormats {
        attention: if attention_skipped { WeightDtype::Bf16 } else { dtype },
        dense_mlp: if mlp_skipped { WeightDtype::Bf16 } else { dtype },
        experts: dtype,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llama_8b() -> &'static str {
        r#"{"architectures":["LlamaForCausalLM"],"hidden_size":4096,"intermediate_size":14336,"num_hidden_layers":32,
            "num_attention_heads":32,"num_key_value_heads":8,"vocab_size":128256,"tie_word_embeddings":false,
            "max_position_embeddings":131072}"#
    }

    #[test]
    fn llama_8b_has_eight_billion_parameters() {
        let spec = ModelSpec::from_hf_config("llama", llama_8b(), "test").unwrap();
        let billions = spec.total_params() / 1e9;
        assert!((7.9..8.1).contains(&billions), "{billions}");
        assert_eq!(
            spec.attention,
            Attention::Gqa {
                n_heads: 32,
                n_kv_heads: 8,
                head_dim: 128
            }
        );
    }

    #[test]
    fn missing_and_malformed_fields_are_named() {
        let error = ModelSpec::from_hf_config("x", r#"{"hidden_size":4096}"#, "cfg.json")
            .unwrap_err()
            .to_string();
        assert!(error.contains("cfg.json") && error.contains("num_hidden_layers"), "{error}");
        let error = ModelSpec::from_hf_config("x", &llama_8b().replace("32,\n", "\"32\",\n"), "cfg.json");
        assert!(error.is_ok() || error.unwrap_err().to_string().contains("positive integer"));
        let error = ModelSpec::from_hf_config("x", "{not json", "cfg.json").unwrap_err().to_string();
        assert!(error.contains("cannot parse cfg.json"), "{error}");
        let bad_kv = llama_8b().replace("\"num_key_value_heads\":8", "\"num_key_value_heads\":7");
        let error = ModelSpec::from_hf_config("x", &bad_kv, "cfg.json").unwrap_err().to_string();
        assert!(error.contains("num_key_value_heads"), "{error}");
        let bad_quant = llama_8b().replace(
            "\"vocab_size\"",
            "\"quantization_config\":{\"quant_method\":\"gptq\"},\"vocab_size\"",
        );
        let error = ModelSpec::from_hf_config("x", &bad_quant, "cfg.json").unwrap_err().to_string();
        assert!(error.contains("quant_method") && error.contains("gptq"), "{error}");
    }
}
