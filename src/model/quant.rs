//! Quantisation: how many bytes a weight or a KV element takes and which tensor cores a GEMM uses.

use std::fmt;

use super::error::{Error, Result};

/// The storage format of a model's linear-layer weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightDtype {
    /// 16-bit brain float (also used for fp16 checkpoints).
    Bf16,
    /// FP8 E4M3 with one scale per tensor (or per channel).
    Fp8PerTensor,
    /// FP8 E4M3 with one scale per 128×128 block (DeepSeek-V3 style).
    Fp8Block,
    /// NVIDIA FP4: E2M1 with an FP8 scale per 16 elements.
    Nvfp4,
    /// OCP MXFP4: E2M1 with an E8M0 scale per 32 elements (gpt-oss).
    Mxfp4,
}

impl WeightDtype {
    /// Bytes per weight, scales included.
    pub fn bytes_per_param(self) -> f64 {
        match self {
            WeightDtype::Bf16 => 2.0,
            WeightDtype::Fp8PerTensor => 1.0,
            WeightDtype::Fp8Block => 1.0 + 4.0 / (128.0 * 128.0),
            WeightDtype::Nvfp4 => 0.5 + 1.0 / 16.0,
            WeightDtype::Mxfp4 => 0.5 + 1.0 / 32.0,
        }
    }

    /// The tensor-core dtype a GEMM with these weights would like to use.
    pub fn compute(self) -> ComputeDtype {
        match self {
            WeightDtype::Bf16 => ComputeDtype::Bf16,
            WeightDtype::Fp8PerTensor | WeightDtype::Fp8Block => ComputeDtype::Fp8,
            WeightDtype::Nvfp4 | WeightDtype::Mxfp4 => ComputeDtype::Fp4,
        }
    }

    /// Parses the `--dtype` flag: `bf16`, `fp8`, `fp8-block`, `fp4`/`nvfp4`, `mxfp4`.
    pub fn parse_flag(value: &str) -> Result<WeightDtype> {
        match value.to_ascii_lowercase().as_str() {
            "bf16" | "bfloat16" | "fp16" | "float16" | "auto" => Ok(WeightDtype::Bf16),
            "fp8" | "fp8-per-tensor" => Ok(WeightDtype::Fp8PerTensor),
            "fp8-block" | "fp8_block" => Ok(WeightDtype::Fp8Block),
            "fp4" | "nvfp4" => Ok(WeightDtype::Nvfp4),
            "mxfp4" => Ok(WeightDtype::Mxfp4),
            _ => Err(Error::BadValue {
                field: "--dtype".into(),
                value: value.into(),
                expected: "one of bf16, fp8, fp8-block, fp4 (nvfp4), mxfp4".into(),
            }),
        }
    }
}

impl fmt::Display for WeightDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WeightDtype::Bf16 => "bf16",
            WeightDtype::Fp8PerTensor => "fp8",
            WeightDtype::Fp8Block => "fp8-block",
            WeightDtype::Nvfp4 => "nvfp4",
            WeightDtype::Mxfp4 => "mxfp4",
        })
    }
}

/// Tensor-core input precision of a GEMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ComputeDtype {
    /// 4-bit floating point.
    Fp4,
    /// 8-bit floating point.
    Fp8,
    /// 16-bit brain float.
    Bf16,
}

/// The element type of the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvDtype {
    /// 16-bit (bf16/fp16), SGLang's `auto` for unquantised models.
    Bf16,
    /// FP8 E4M3 or E5M2.
    Fp8,
}

impl KvDtype {
    /// Bytes per cached element.
    pub fn bytes(self) -> f64 {
        match self {
            KvDtype::Bf16 => 2.0,
            KvDtype::Fp8 => 1.0,
        }
    }

    /// Parses `--kv-cache-dtype`: `auto` (bf16), `bf16`, `fp16`, `fp8`, `fp8_e4m3`, `fp8_e5m2`.
    pub fn parse_flag(value: &str) -> Result<KvDtype> {
        match value.to_ascii_lowercase().as_str() {
            "auto" | "bf16" | "bfloat16" | "fp16" | "float16" => Ok(KvDtype::Bf16),
            "fp8" | "fp8_e4m3" | "fp8_e5m2" | "fp8-e4m3" | "fp8-e5m2" => Ok(KvDtype::Fp8),
            _ => Err(Error::BadValue {
                field: "--kv-cache-dtype".into(),
                value: value.into(),
                expected: "one of auto, bf16, fp16, fp8, fp8_e4m3, fp8_e5m2".into(),
            }),
        }
    }
}

impl fmt::Display for KvDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KvDtype::Bf16 => "bf16",
            KvDtype::Fp8 => "fp8",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrower_formats_take_fewer_bytes() {
        let order = [
            WeightDtype::Bf16,
            WeightDtype::Fp8Block,
            WeightDtype::Fp8PerTensor,
            WeightDtype::Nvfp4,
            WeightDtype::Mxfp4,
        ];
        for pair in order.windows(2) {
            assert!(pair[0].bytes_per_param() > pair[1].bytes_per_param(), "{:?}", pair);
        }
    }

    #[test]
    fn flags_parse_and_reject() {
        assert_eq!(WeightDtype::parse_flag("FP8").unwrap(), WeightDtype::Fp8PerTensor);
        assert_eq!(KvDtype::parse_flag("fp8_e5m2").unwrap(), KvDtype::Fp8);
        let error = WeightDtype::parse_flag("int3").unwrap_err().to_string();
        assert!(
            error.contains("--dtype") && error.contains("int3") && error.contains("bf16"),
            "{error}"
        );
    }
}
