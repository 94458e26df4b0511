//! Measured efficiency of SGLang's Triton fused MoE per expert shape.
//!
//! The Triton fused-MoE kernel runs with a tile configuration tuned per (local experts, expert width,
//! GPU, dtype) (SGLang's `fused_moe_triton/configs/E=..,N=..,device_name=...json`, or an untuned default
//! where no file exists), so two layers with the same FLOPs and bytes can run at quite different
//! fractions of the roofline: AIConfigurator's SGLang tables show Qwen3-235B's 1536-wide BF16 experts at
//! about half the tensor-core rate of Qwen3-30B's 768-wide ones, and DeepSeek-V3's experts streaming
//! their weights at 0.83 of HBM bandwidth unsplit but 0.62 when split eight ways (256-wide slices).
//!
//! This module holds, per measured shape, a factor on each of the two MoE efficiencies
//! (`moe_compute_eff` / `moe_fp8_compute_eff` and `moe_mem_eff`), fitted by `sglsim kernels --fit` to
//! those tables (`data/moe_shapes.csv`). Factors rather than absolute efficiencies, so a calibrated
//! profile that moves the MoE coefficients still moves every shape. Shapes not in the table use the
//! coefficients alone (factor 1).

use std::sync::OnceLock;

use super::quant::WeightDtype;

const BUILTIN_MOE_SHAPES_CSV: &str = include_str!("../../data/moe_shapes.csv");

/// The shape of one rank's slice of a fused-MoE layer: what selects the kernel's tuned tile config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoeShape {
    /// Weight format (`Bf16` or `Fp8Block` in the measured tables).
    pub weights: WeightDtype,
    /// Hidden size.
    pub hidden: u64,
    /// Intermediate size of one expert on this rank (after the expert tensor split).
    pub slice: u64,
    /// Experts held by this rank.
    pub local_experts: u64,
}

/// Efficiency factors of one measured shape on one GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct MoeShapeFactors {
    /// GPU catalog name (`h100-sxm`, `h200`).
    pub gpu: String,
    /// The shape.
    pub shape: MoeShape,
    /// Multiplies the MoE compute efficiency (`moe_compute_eff` or `moe_fp8_compute_eff`).
    pub compute_factor: f64,
    /// Multiplies `moe_mem_eff`, the fraction of HBM bandwidth reached while streaming expert weights.
    pub mem_factor: f64,
    /// Measured rows behind the factors.
    pub rows: usize,
    /// Median absolute % error of those rows after the fit.
    pub median_ape: f64,
    /// Whether the measurement routed tokens the way serving does, so the factors may price serving:
    /// false for AIConfigurator's plain-path rows at EP > 1, where every remote slot was handed to local
    /// expert 0 (their factors describe that measurement only).
    pub serving: bool,
    /// Where the rows come from.
    pub source: String,
}

/// Column names of the table, in order.
pub const MOE_SHAPES_HEADER: &str = "gpu,weights,hidden,slice,local_experts,compute_factor,mem_factor,rows,median_ape_pct,serving,source";

fn weights_name(weights: WeightDtype) -> &'static str {
    match weights {
        WeightDtype::Bf16 => "bf16",
        WeightDtype::Fp8PerTensor => "fp8",
        WeightDtype::Fp8Block => "fp8_block",
        WeightDtype::Nvfp4 => "nvfp4",
        WeightDtype::Mxfp4 => "mxfp4",
    }
}

impl MoeShapeFactors {
    /// One CSV line in [`MOE_SHAPES_HEADER`] order.
    pub fn to_csv_line(&self) -> String {
        format!(
            "{},{},{},{},{},{:.4},{:.4},{},{:.1},{},{}",
            self.gpu,
            weights_name(self.shape.weights),
            self.shape.hidden,
            self.shape.slice,
            self.shape.local_experts,
            self.compute_factor,
            self.mem_factor,
            self.rows,
            self.median_ape,
            if self.serving { "yes" } else { "no" },
            self.source
        )
    }
}

/// Parses a table in [`MOE_SHAPES_HEADER`] form. Errors name the line and the field.
pub fn parse_moe_shapes(text: &str) -> Result<Vec<MoeShapeFactors>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#'));
    match lines.next() {
        Some(header) if header.trim() == MOE_SHAPES_HEADER => {}
        other => return Err(format!("moe shape table: header must be `{MOE_SHAPES_HEADER}`, found {other:?}")),
    }
    let mut table = Vec::new();
    for (index, line) in lines.enumerate() {
        let fields: Vec<&str> = line.splitn(11, ',').map(str::trim).collect();
        if fields.len() != 11 {
            return Err(format!(
                "moe shape table line {}: expected 11 fields, found {}",
                index + 2,
                fields.len()
            ));
        }
        let number = |i: usize| -> Result<f64, String> {
            fields[i].parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).ok_or_else(|| {
                format!(
                    "moe shape table line {}: field {} = `{}` is not a non-negative number",
                    index + 2,
                    i + 1,
                    fields[i]
                )
            })
        };
        let weights = match fields[1] {
            "bf16" => WeightDtype::Bf16,
            "fp8_block" => WeightDtype::Fp8Block,
            "mxfp4" => WeightDtype::Mxfp4,
            other => {
                return Err(format!(
                    "moe shape table line {}: weights `{other}` (accepted: bf16, fp8_block, mxfp4)",
                    index + 2
                ))
            }
        };
        table.push(MoeShapeFactors {
            gpu: fields[0].to_string(),
            shape: MoeShape {
                weights,
                hidden: number(2)? as u64,
                slice: number(3)? as u64,
                local_experts: number(4)? as u64,
            },
            compute_factor: number(5)?,
            mem_factor: number(6)?,
            rows: number(7)? as usize,
            median_ape: number(8)?,
            serving: match fields[9] {
                "yes" => true,
                "no" => false,
                other => return Err(format!("moe shape table line {}: serving `{other}` (accepted: yes, no)", index + 2)),
            },
            source: fields[10].to_string(),
        });
    }
    Ok(table)
}

/// The bundled table (`data/moe_shapes.csv`).
pub fn builtin_moe_shapes() -> &'static [MoeShapeFactors] {
    static TABLE: OnceLock<Vec<MoeShapeFactors>> = OnceLock::new();
    TABLE.get_or_init(|| parse_moe_shapes(BUILTIN_MOE_SHAPES_CSV).expect("data/moe_shapes.csv is checked by a unit test"))
}

/// The (compute, memory) efficiency factors of `shape` on `gpu` in `table`, from rows routed as serving
/// routes when `serving_only`; (1, 1) where there is no such row.
pub fn moe_shape_factors(table: &[MoeShapeFactors], gpu: &str, shape: &MoeShape, serving_only: bool) -> (f64, f64) {
    table
        .iter()
        .find(|f| f.shape == *shape && (f.serving || !serving_only) && f.gpu == gpu)
        .map_or((1.0, 1.0), |f| (f.compute_factor, f.mem_factor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_table_parses_and_its_factors_are_plausible() {
        let table = builtin_moe_shapes();
        assert!(table.len() >= 20, "{}", table.len());
        for row in table {
            // The fit searches 1/16..4; the lowest factors are gpt-oss's weight-only MXFP4 rows with one or
            // two local experts, whose fixed per-call cost the roofline does not hold.
            assert!((0.0625..=4.0).contains(&row.compute_factor), "{row:?}");
            assert!((0.0625..=4.0).contains(&row.mem_factor), "{row:?}");
            assert!(row.rows >= 5, "{row:?}");
            if row.shape.weights != WeightDtype::Mxfp4 {
                assert!(row.compute_factor >= 0.2 && row.mem_factor >= 0.2, "{row:?}");
            }
        }
    }

    #[test]
    fn unknown_shapes_get_unit_factors_and_bad_lines_are_named() {
        let text = format!(
            "{MOE_SHAPES_HEADER}\nh200,bf16,2048,768,128,0.9000,1.1000,15,4.2,yes,test\nh200,bf16,2048,768,64,2.0000,1.0000,15,4.2,no,test\n"
        );
        let table = parse_moe_shapes(&text).unwrap();
        let shape = MoeShape {
            weights: WeightDtype::Bf16,
            hidden: 2048,
            slice: 768,
            local_experts: 128,
        };
        assert_eq!(moe_shape_factors(&table, "h200", &shape, true), (0.9, 1.1));
        assert_eq!(moe_shape_factors(&table, "h100-sxm", &shape, true), (1.0, 1.0));
        // A shape measured only under the collector's non-serving routing prices that measurement only.
        let ep2 = MoeShape {
            local_experts: 64,
            ..shape
        };
        assert_eq!(moe_shape_factors(&table, "h200", &ep2, true), (1.0, 1.0));
        assert_eq!(moe_shape_factors(&table, "h200", &ep2, false), (2.0, 1.0));
        let bad = format!("{MOE_SHAPES_HEADER}\nh200,int4,2048,768,128,0.9,1.1,15,4.2,yes,test\n");
        let error = parse_moe_shapes(&bad).unwrap_err();
        assert!(error.contains("int4") && error.contains("line 2"), "{error}");
        assert_eq!(table[0].to_csv_line(), "h200,bf16,2048,768,128,0.9000,1.1000,15,4.2,yes,test");
    }
}
