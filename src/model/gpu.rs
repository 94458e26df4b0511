//! The GPU catalog: memory, bandwidth, peak FLOP/s and interconnect of each supported GPU.
//!
//! The catalog is `data/gpus.toml`, compiled in. [`GpuCatalog::builtin`] parses it once;
//! [`GpuCatalog::find`] resolves a user's spelling (case-insensitive, AIConfigurator aliases too).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::error::{nearest_names, Error, Result};
use super::quant::ComputeDtype;

const BUILTIN_GPUS_TOML: &str = include_str!("../../data/gpus.toml");

/// One GPU type: the hardware figures the roofline needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    /// Canonical lowercase name, for example `h100-sxm`.
    pub name: String,
    /// Other accepted spellings (lowercase).
    pub aliases: Vec<String>,
    /// Marketing name.
    pub display_name: String,
    /// Device memory as the driver reports it, bytes.
    pub memory_bytes: f64,
    /// Peak HBM (or GDDR) bandwidth, bytes/s.
    pub hbm_bytes_per_s: f64,
    /// Dense BF16 tensor-core peak, FLOP/s.
    pub bf16_flops_per_s: f64,
    /// Dense FP8 tensor-core peak, FLOP/s; absent where the GPU has no FP8 tensor cores.
    #[serde(default)]
    pub fp8_flops_per_s: Option<f64>,
    /// Dense FP4 tensor-core peak, FLOP/s; absent where the GPU has no FP4 tensor cores.
    #[serde(default)]
    pub fp4_flops_per_s: Option<f64>,
    /// Streaming multiprocessors, used for wave quantisation of GEMMs.
    pub sm_count: u32,
    /// Scale-up (NVLink, or PCIe where there is none) bandwidth per GPU per direction, bytes/s.
    pub nvlink_bytes_per_s: f64,
    /// Small-message latency of the scale-up fabric, microseconds.
    pub nvlink_latency_us: f64,
    /// Scale-out (RDMA NIC) bandwidth per GPU per direction, bytes/s.
    pub rdma_bytes_per_s: f64,
    /// Small-message latency of the scale-out fabric, microseconds.
    pub rdma_latency_us: f64,
    /// GPUs in one server.
    pub gpus_per_node: u32,
    /// GPUs that share one NVLink domain (72 for NVL72 racks).
    pub nvlink_domain_size: u32,
    /// Where each figure comes from.
    pub sources: BTreeMap<String, String>,
}

impl GpuSpec {
    /// Dense tensor-core peak for a compute dtype, FLOP/s.
    ///
    /// A dtype the GPU has no tensor cores for runs at the next wider one that it has
    /// (FP4 weights on Hopper are dequantised to FP8 or BF16; FP8 on Ampere to BF16),
    /// which is what SGLang's weight-only kernels do.
    pub fn peak_flops_per_s(&self, dtype: ComputeDtype) -> f64 {
        match dtype {
            ComputeDtype::Fp4 => self.fp4_flops_per_s.unwrap_or(self.bf16_flops_per_s),
            ComputeDtype::Fp8 => self.fp8_flops_per_s.unwrap_or(self.bf16_flops_per_s),
            ComputeDtype::Bf16 => self.bf16_flops_per_s,
        }
    }

    /// Whether the GPU has tensor cores for this dtype.
    pub fn supports(&self, dtype: ComputeDtype) -> bool {
        match dtype {
            ComputeDtype::Fp4 => self.fp4_flops_per_s.is_some(),
            ComputeDtype::Fp8 => self.fp8_flops_per_s.is_some(),
            ComputeDtype::Bf16 => true,
        }
    }

    /// Device memory in GiB (what SGLang's logs call GB).
    pub fn memory_gib(&self) -> f64 {
        self.memory_bytes / GIB
    }

    fn validate(&self) -> Result<()> {
        let positive = [
            ("memory_bytes", self.memory_bytes),
            ("hbm_bytes_per_s", self.hbm_bytes_per_s),
            ("bf16_flops_per_s", self.bf16_flops_per_s),
            ("nvlink_bytes_per_s", self.nvlink_bytes_per_s),
            ("nvlink_latency_us", self.nvlink_latency_us),
            ("rdma_bytes_per_s", self.rdma_bytes_per_s),
            ("rdma_latency_us", self.rdma_latency_us),
        ];
        for (field, value) in positive {
            if !(value.is_finite() && value > 0.0) {
                return Err(Error::BadField {
                    path: format!("data/gpus.toml [{}]", self.name),
                    field: field.to_string(),
                    problem: format!("is {value}; expected a positive number"),
                });
            }
        }
        for (field, value) in [("fp8_flops_per_s", self.fp8_flops_per_s), ("fp4_flops_per_s", self.fp4_flops_per_s)] {
            if let Some(value) = value {
                if !(value.is_finite() && value > 0.0) {
                    return Err(Error::BadField {
                        path: format!("data/gpus.toml [{}]", self.name),
                        field: field.to_string(),
                        problem: format!("is {value}; expected a positive number or no key"),
                    });
                }
            }
        }
        if self.sm_count == 0 || self.gpus_per_node == 0 || self.nvlink_domain_size == 0 {
            return Err(Error::BadField {
                path: format!("data/gpus.toml [{}]", self.name),
                field: "sm_count/gpus_per_node/nvlink_domain_size".into(),
                problem: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// Bytes in one GiB.
pub const GIB: f64 = 1_073_741_824.0;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GpuFile {
    schema_version: u32,
    gpu: Vec<GpuSpec>,
}

/// All known GPUs.
#[derive(Debug, Clone)]
pub struct GpuCatalog {
    gpus: Vec<GpuSpec>,
}

impl GpuCatalog {
    /// The catalog compiled in from `data/gpus.toml`.
    pub fn builtin() -> Result<GpuCatalog> {
        GpuCatalog::from_toml(BUILTIN_GPUS_TOML, "data/gpus.toml")
    }

    /// Parses a catalog in the `data/gpus.toml` schema.
    pub fn from_toml(text: &str, path: &str) -> Result<GpuCatalog> {
        let file: GpuFile = toml::from_str(text).map_err(|e| Error::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        if file.schema_version != 1 {
            return Err(Error::BadField {
                path: path.to_string(),
                field: "schema_version".into(),
                problem: format!("is {}; this build reads version 1", file.schema_version),
            });
        }
        for gpu in &file.gpu {
            gpu.validate()?;
        }
        Ok(GpuCatalog { gpus: file.gpu })
    }

    /// Every GPU, in catalog order.
    pub fn all(&self) -> &[GpuSpec] {
        &self.gpus
    }

    /// Finds a GPU by name or alias, case-insensitively; `_` and `-` are interchangeable.
    pub fn find(&self, name: &str) -> Result<&GpuSpec> {
        let wanted = normalise(name);
        self.gpus
            .iter()
            .find(|gpu| normalise(&gpu.name) == wanted || gpu.aliases.iter().any(|alias| normalise(alias) == wanted))
            .ok_or_else(|| Error::UnknownGpu {
                name: name.to_string(),
                suggestions: nearest_names(
                    name,
                    self.gpus
                        .iter()
                        .flat_map(|gpu| std::iter::once(gpu.name.as_str()).chain(gpu.aliases.iter().map(String::as_str))),
                    3,
                ),
            })
    }
}

fn normalise(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace('_', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_has_every_required_gpu_with_sources() {
        let catalog = GpuCatalog::builtin().unwrap();
        for name in [
            "a100-40g",
            "a100-80g",
            "h100-sxm",
            "h100-pcie",
            "h20",
            "h200",
            "b200",
            "b300",
            "gb200",
            "gb300",
            "l40s",
            "rtx-pro-6000",
        ] {
            let gpu = catalog.find(name).unwrap_or_else(|e| panic!("{e}"));
            assert!(!gpu.sources.is_empty(), "{name} names no sources");
        }
        for alias in ["h100_sxm", "H200_SXM", "b200_sxm", "b300_sxm", "GB200", "gb300", "a100_sxm", "L40S"] {
            catalog.find(alias).unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(catalog.find("gb200").unwrap().nvlink_domain_size, 72);
    }

    #[test]
    fn aliases_are_unique() {
        let catalog = GpuCatalog::builtin().unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for gpu in catalog.all() {
            let own: std::collections::BTreeSet<String> = std::iter::once(&gpu.name).chain(&gpu.aliases).map(|n| normalise(n)).collect();
            for name in own {
                assert!(seen.insert(name.clone()), "{name} names two GPUs");
            }
        }
    }

    #[test]
    fn unknown_gpu_suggests_near_names() {
        let catalog = GpuCatalog::builtin().unwrap();
        let error = catalog.find("h100-sx").unwrap_err().to_string();
        assert!(error.contains("h100-sxm"), "{error}");
    }

    #[test]
    fn generations_are_ordered_by_bandwidth_and_compute() {
        let catalog = GpuCatalog::builtin().unwrap();
        let a100 = catalog.find("a100-80g").unwrap();
        let h100 = catalog.find("h100-sxm").unwrap();
        let b200 = catalog.find("b200").unwrap();
        assert!(a100.hbm_bytes_per_s < h100.hbm_bytes_per_s && h100.hbm_bytes_per_s < b200.hbm_bytes_per_s);
        assert!(a100.bf16_flops_per_s < h100.bf16_flops_per_s && h100.bf16_flops_per_s < b200.bf16_flops_per_s);
        assert!(!a100.supports(ComputeDtype::Fp8) && h100.supports(ComputeDtype::Fp8) && b200.supports(ComputeDtype::Fp4));
    }
}
