//! Parallel mappings as SGLang spells them: `--tp`, `--dp` (DP attention) and `--ep`.
//!
//! `--tp N` is the number of GPUs of one engine. With `--dp D` (and `--enable-dp-attention`)
//! attention runs data-parallel over D groups of N/D GPUs; with `--ep E` the routed experts are
//! partitioned over E ranks and each expert is tensor-split over N/E. The usual MoE names:
//! TP (`ep = 1`), TEP (`ep = tp`, `dp = 1`) and DEP (`dp = ep = tp`).

use std::fmt;

use super::arch::{Attention, ModelSpec};
use super::error::{Error, Result};
use super::quant::WeightDtype;

/// A validated mapping of one engine onto its GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParallelMapping {
    tp: u32,
    dp: u32,
    ep: u32,
    /// `--ep-num-redundant-experts`: extra replicas of the busiest experts (EPLB), so that
    /// `n_experts + redundant` physical experts divide over the EP ranks.
    redundant_experts: u32,
}

impl ParallelMapping {
    /// Checks a mapping against a model; the error names the dimension that does not divide and what would.
    pub fn new(model: &ModelSpec, tp: u32, dp: u32, ep: u32) -> Result<ParallelMapping> {
        ParallelMapping::with_redundant_experts(model, tp, dp, ep, 0)
    }

    /// [`ParallelMapping::new`] with `--ep-num-redundant-experts`: the routed experts plus `redundant`
    /// replicas (placed by SGLang's EPLB on the busiest experts) must divide over the EP ranks.
    pub fn with_redundant_experts(model: &ModelSpec, tp: u32, dp: u32, ep: u32, redundant: u32) -> Result<ParallelMapping> {
        let mapping = ParallelMapping {
            tp,
            dp,
            ep,
            redundant_experts: redundant,
        };
        let bad = |problem: String| Error::BadMapping {
            mapping: mapping.to_string(),
            problem,
        };
        if tp == 0 || dp == 0 || ep == 0 {
            return Err(bad("--tp, --dp and --ep must be at least 1".into()));
        }
        if !tp.is_multiple_of(dp) {
            return Err(bad(format!("--dp {dp} must divide --tp {tp} (valid --dp: {})", list(divisors(tp)))));
        }
        if !tp.is_multiple_of(ep) {
            return Err(bad(format!("--ep {ep} must divide --tp {tp} (valid --ep: {})", list(divisors(tp)))));
        }
        let attention_tp = u64::from(tp / dp);
        let n_heads = model.attention.n_heads();
        if !n_heads.is_multiple_of(attention_tp) {
            let valid: Vec<u32> = divisors(tp)
                .into_iter()
                .filter(|d| n_heads.is_multiple_of(u64::from(tp / d)))
                .collect();
            return Err(bad(format!(
                "attention TP size {attention_tp} (= tp/dp) does not divide num_attention_heads {n_heads}; --dp values that would: {}",
                list(valid)
            )));
        }
        if let Attention::Gqa { n_kv_heads, .. } = model.attention {
            let divides = if attention_tp >= n_kv_heads {
                attention_tp % n_kv_heads == 0
            } else {
                n_kv_heads % attention_tp == 0
            };
            if !divides {
                return Err(bad(format!(
                    "attention TP size {attention_tp} and num_key_value_heads {n_kv_heads}: one must be a multiple of the other"
                )));
            }
        }
        if model.n_dense_mlp_layers() > 0 && !model.dense_intermediate.is_multiple_of(u64::from(tp)) {
            return Err(bad(format!(
                "--tp {tp} does not divide intermediate_size {}",
                model.dense_intermediate
            )));
        }
        match &model.moe {
            None if ep > 1 => return Err(bad(format!("--ep {ep} needs an MoE model; {} is dense (use --ep 1)", model.name))),
            None if redundant > 0 => {
                return Err(bad(format!(
                    "--ep-num-redundant-experts {redundant} needs an MoE model; {} is dense",
                    model.name
                )))
            }
            None => {}
            Some(_) if redundant > 0 && ep == 1 => {
                return Err(bad(format!(
                    "--ep-num-redundant-experts {redundant} needs expert parallelism (--ep > 1)"
                )))
            }
            Some(moe) => {
                let physical = moe.n_experts + u64::from(redundant);
                if physical % u64::from(ep) != 0 {
                    let valid: Vec<u32> = divisors(tp).into_iter().filter(|d| physical % u64::from(*d) == 0).collect();
                    let pad = u64::from(ep) - physical % u64::from(ep);
                    let experts = if redundant == 0 {
                        format!("{} routed experts", moe.n_experts)
                    } else {
                        format!("{physical} physical experts ({} routed + {redundant} redundant)", moe.n_experts)
                    };
                    return Err(bad(format!(
                        "--ep {ep} does not divide the {experts}; valid --ep: {}, or keep --ep {ep} with --ep-num-redundant-experts {}",
                        list(valid),
                        u64::from(redundant) + pad
                    )));
                }
                let moe_tp = u64::from(tp / ep);
                if moe.expert_intermediate % moe_tp != 0 {
                    return Err(bad(format!(
                        "MoE TP size {moe_tp} (= tp/ep) does not divide moe_intermediate_size {}",
                        moe.expert_intermediate
                    )));
                }
                let block = if model.weights.experts == WeightDtype::Fp8Block { 128 } else { 1 };
                if (moe.expert_intermediate / moe_tp) % block != 0 {
                    let valid: Vec<u32> = divisors(tp)
                        .into_iter()
                        .filter(|e| moe.n_experts % u64::from(*e) == 0 && (moe.expert_intermediate / u64::from(tp / e)) % block == 0)
                        .collect();
                    return Err(bad(format!(
                        "each rank would hold {} of moe_intermediate_size {}, not a multiple of the fp8 weight block {block}; use --ep so that tp/ep is smaller (valid --ep: {})",
                        moe.expert_intermediate / moe_tp,
                        moe.expert_intermediate,
                        list(valid)
                    )));
                }
            }
        }
        Ok(mapping)
    }

    /// GPUs of the engine (`--tp`).
    pub fn tp(&self) -> u32 {
        self.tp
    }

    /// Attention data-parallel groups (`--dp` with DP attention); 1 when off.
    pub fn dp(&self) -> u32 {
        self.dp
    }

    /// Expert-parallel ranks (`--ep`).
    pub fn ep(&self) -> u32 {
        self.ep
    }

    /// GPUs one engine occupies.
    pub fn n_gpus(&self) -> u32 {
        self.tp
    }

    /// Tensor-parallel size of attention: `tp / dp`.
    pub fn attention_tp(&self) -> u32 {
        self.tp / self.dp
    }

    /// Tensor-parallel size of each expert: `tp / ep`.
    pub fn moe_tp(&self) -> u32 {
        self.tp / self.ep
    }

    /// Redundant expert replicas (`--ep-num-redundant-experts`).
    pub fn redundant_experts(&self) -> u32 {
        self.redundant_experts
    }

    /// Whether DP attention is on.
    pub fn dp_attention(&self) -> bool {
        self.dp > 1
    }

    /// The usual name: TP, TEP, DEP, or a hybrid spelled out.
    pub fn kind(&self) -> &'static str {
        match (self.dp, self.ep) {
            (1, 1) => "TP",
            (1, e) if e == self.tp => "TEP",
            (d, e) if d == self.tp && e == self.tp => "DEP",
            (1, _) => "TP+EP",
            (_, 1) => "DP-attn+TP",
            _ => "DP-attn+EP",
        }
    }

    /// The SGLang launch flags for this mapping.
    pub fn sglang_flags(&self) -> String {
        let mut flags = format!("--tp {}", self.tp);
        if self.dp > 1 {
            flags.push_str(&format!(" --dp {} --enable-dp-attention", self.dp));
        }
        if self.ep > 1 {
            flags.push_str(&format!(" --ep {}", self.ep));
        }
        if self.redundant_experts > 0 {
            flags.push_str(&format!(" --ep-num-redundant-experts {}", self.redundant_experts));
        }
        flags
    }
}

impl fmt::Display for ParallelMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tp{}", self.tp)?;
        if self.dp > 1 {
            write!(f, "-dp{}", self.dp)?;
        }
        if self.ep > 1 {
            write!(f, "-ep{}", self.ep)?;
        }
        if self.redundant_experts > 0 {
            write!(f, "+r{}", self.redundant_experts)?;
        }
        Ok(())
    }
}

fn divisors(n: u32) -> Vec<u32> {
    (1..=n).filter(|d| n.is_multiple_of(*d)).collect()
}

fn list(values: Vec<u32>) -> String {
    if values.is_empty() {
        return "none".into();
    }
    values.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::model_catalog::find_bundled_spec;

    fn model(name: &str) -> ModelSpec {
        find_bundled_spec(name).unwrap().unwrap()
    }

    #[test]
    fn moe_mappings_have_their_names() {
        let deepseek = model("DeepSeek-R1");
        assert_eq!(ParallelMapping::new(&deepseek, 8, 1, 1).unwrap().kind(), "TP");
        assert_eq!(ParallelMapping::new(&deepseek, 8, 1, 8).unwrap().kind(), "TEP");
        let dep = ParallelMapping::new(&deepseek, 8, 8, 8).unwrap();
        assert_eq!((dep.kind(), dep.attention_tp(), dep.moe_tp()), ("DEP", 1, 1));
        assert_eq!(dep.sglang_flags(), "--tp 8 --dp 8 --enable-dp-attention --ep 8");
    }

    #[test]
    fn redundant_experts_let_ep_ranks_that_do_not_divide_the_experts_work() {
        // The large-scale EP deployment of DeepSeek-V3 (lmsys.org 2025-05-05): 72 decode ranks hold
        // 256 + 32 redundant experts, four each.
        let deepseek = model("deepseek-ai/DeepSeek-V3");
        let error = ParallelMapping::new(&deepseek, 72, 72, 72).unwrap_err().to_string();
        assert!(
            error.contains("256 routed experts") && error.contains("--ep-num-redundant-experts 32"),
            "{error}"
        );
        let mapping = ParallelMapping::with_redundant_experts(&deepseek, 72, 72, 72, 32).unwrap();
        assert_eq!(mapping.redundant_experts(), 32);
        assert_eq!(mapping.to_string(), "tp72-dp72-ep72+r32");
        assert!(mapping.sglang_flags().ends_with("--ep 72 --ep-num-redundant-experts 32"));
        let error = ParallelMapping::with_redundant_experts(&deepseek, 72, 72, 72, 16)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("272 physical experts") && error.contains("--ep-num-redundant-experts 32"),
            "{error}"
        );
        let dense = model("meta-llama/Llama-3.1-8B-Instruct");
        assert!(ParallelMapping::with_redundant_experts(&dense, 8, 1, 1, 8).is_err());
    }

    #[test]
    fn bad_mappings_say_what_would_divide() {
        let qwen = model("Qwen3-14B");
        let error = ParallelMapping::new(&qwen, 16, 1, 1).unwrap_err().to_string();
        assert!(error.contains("num_attention_heads 40") && error.contains("tp16"), "{error}");
        let error = ParallelMapping::new(&qwen, 8, 3, 1).unwrap_err().to_string();
        assert!(
            error.contains("--dp 3 must divide --tp 8") && error.contains("1, 2, 4, 8"),
            "{error}"
        );
        let error = ParallelMapping::new(&qwen, 4, 1, 2).unwrap_err().to_string();
        assert!(error.contains("needs an MoE model"), "{error}");
        // Qwen3-235B-A22B-FP8: 1536 / 8 = 192 is not a multiple of the 128 block; SGLang refuses TP8 without EP.
        let qwen_fp8 = model("Qwen3-235B-A22B-FP8");
        let error = ParallelMapping::new(&qwen_fp8, 8, 1, 1).unwrap_err().to_string();
        assert!(error.contains("fp8 weight block") && error.contains("--ep"), "{error}");
        assert!(ParallelMapping::new(&qwen_fp8, 8, 1, 8).is_ok());
        assert!(ParallelMapping::new(&qwen, 4, 1, 1).is_ok());
    }
}
