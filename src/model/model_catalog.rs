//! Bundled model configs, addressable by Hugging Face id, and loading a model from a path.
//!
//! `data/models/catalog.toml` lists each bundled id, its aliases and its `config.json` file;
//! the files themselves are compiled in. [`find_bundled_spec`] resolves an id; reading a `config.json` from a path
//! is the CLI's job (this module does no IO).

use serde::Deserialize;

use super::arch::ModelSpec;
use super::error::{nearest_names, Error, Result};

const CATALOG_TOML: &str = include_str!("../../data/models/catalog.toml");

/// The bundled `config.json` files, by file name.
const BUNDLED_CONFIGS: &[(&str, &str)] = &[
    (
        "Qwen--Qwen2.5-32B-Instruct.json",
        include_str!("../../data/models/Qwen--Qwen2.5-32B-Instruct.json"),
    ),
    (
        "Qwen--Qwen2.5-72B-Instruct.json",
        include_str!("../../data/models/Qwen--Qwen2.5-72B-Instruct.json"),
    ),
    (
        "Qwen--Qwen2.5-7B-Instruct.json",
        include_str!("../../data/models/Qwen--Qwen2.5-7B-Instruct.json"),
    ),
    ("Qwen--Qwen3-14B.json", include_str!("../../data/models/Qwen--Qwen3-14B.json")),
    (
        "Qwen--Qwen3-235B-A22B-FP8.json",
        include_str!("../../data/models/Qwen--Qwen3-235B-A22B-FP8.json"),
    ),
    (
        "Qwen--Qwen3-235B-A22B.json",
        include_str!("../../data/models/Qwen--Qwen3-235B-A22B.json"),
    ),
    (
        "Qwen--Qwen3-30B-A3B-FP8.json",
        include_str!("../../data/models/Qwen--Qwen3-30B-A3B-FP8.json"),
    ),
    (
        "Qwen--Qwen3-30B-A3B.json",
        include_str!("../../data/models/Qwen--Qwen3-30B-A3B.json"),
    ),
    (
        "Qwen--Qwen3-32B-FP8.json",
        include_str!("../../data/models/Qwen--Qwen3-32B-FP8.json"),
    ),
    ("Qwen--Qwen3-32B.json", include_str!("../../data/models/Qwen--Qwen3-32B.json")),
    ("Qwen--Qwen3-8B.json", include_str!("../../data/models/Qwen--Qwen3-8B.json")),
    (
        "deepseek-ai--DeepSeek-R1.json",
        include_str!("../../data/models/deepseek-ai--DeepSeek-R1.json"),
    ),
    (
        "deepseek-ai--DeepSeek-V3.json",
        include_str!("../../data/models/deepseek-ai--DeepSeek-V3.json"),
    ),
    (
        "meta-llama--Llama-3.3-70B-Instruct.json",
        include_str!("../../data/models/meta-llama--Llama-3.3-70B-Instruct.json"),
    ),
    (
        "meta-llama--Meta-Llama-3.1-405B.json",
        include_str!("../../data/models/meta-llama--Meta-Llama-3.1-405B.json"),
    ),
    (
        "meta-llama--Meta-Llama-3.1-70B.json",
        include_str!("../../data/models/meta-llama--Meta-Llama-3.1-70B.json"),
    ),
    (
        "meta-llama--Meta-Llama-3.1-8B.json",
        include_str!("../../data/models/meta-llama--Meta-Llama-3.1-8B.json"),
    ),
    (
        "lmsys--gpt-oss-120b-bf16.json",
        include_str!("../../data/models/lmsys--gpt-oss-120b-bf16.json"),
    ),
    (
        "mistralai--Mixtral-8x7B-v0.1.json",
        include_str!("../../data/models/mistralai--Mixtral-8x7B-v0.1.json"),
    ),
    (
        "moonshotai--Kimi-K2-Instruct.json",
        include_str!("../../data/models/moonshotai--Kimi-K2-Instruct.json"),
    ),
    (
        "openai--gpt-oss-120b.json",
        include_str!("../../data/models/openai--gpt-oss-120b.json"),
    ),
    (
        "openai--gpt-oss-20b.json",
        include_str!("../../data/models/openai--gpt-oss-20b.json"),
    ),
];

/// One bundled model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundledModel {
    /// Hugging Face id, for example `meta-llama/Llama-3.1-8B-Instruct`.
    pub id: String,
    /// Other ids with the same architecture.
    pub aliases: Vec<String>,
    /// File name under `data/models/`.
    pub config: String,
    /// Where the config values come from.
    pub source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    schema_version: u32,
    model: Vec<BundledModel>,
}

/// Every bundled model, in catalog order.
pub fn bundled_models() -> Result<Vec<BundledModel>> {
    let file: CatalogFile = toml::from_str(CATALOG_TOML).map_err(|e| Error::Parse {
        path: "data/models/catalog.toml".into(),
        message: e.to_string(),
    })?;
    if file.schema_version != 1 {
        return Err(Error::BadField {
            path: "data/models/catalog.toml".into(),
            field: "schema_version".into(),
            problem: format!("is {}; this build reads version 1", file.schema_version),
        });
    }
    Ok(file.model)
}

fn bundled_text(file_name: &str) -> Result<&'static str> {
    BUNDLED_CONFIGS
        .iter()
        .find(|(name, _)| *name == file_name)
        .map(|(_, text)| *text)
        .ok_or_else(|| Error::BadField {
            path: "data/models/catalog.toml".into(),
            field: "config".into(),
            problem: format!("names '{file_name}', which is not compiled in"),
        })
}

fn matches(wanted: &str, id: &str) -> bool {
    let id = id.to_ascii_lowercase();
    let short = id.rsplit('/').next().unwrap_or(&id);
    wanted == id || wanted == short
}

/// Finds a bundled model by id or alias, case-insensitively, with or without the organisation prefix.
pub fn find_bundled(name: &str) -> Result<Option<BundledModel>> {
    let wanted = name.trim().to_ascii_lowercase();
    let wanted_short = wanted.rsplit('/').next().unwrap_or(&wanted).to_string();
    Ok(bundled_models()?.into_iter().find(|model| {
        std::iter::once(&model.id)
            .chain(&model.aliases)
            .any(|id| matches(&wanted, id) || matches(&wanted_short, id))
    }))
}

/// Parses the config text of a bundled model.
pub fn bundled_spec(model: &BundledModel) -> Result<ModelSpec> {
    ModelSpec::from_hf_config(&model.id, bundled_text(&model.config)?, &format!("data/models/{}", model.config))
}

/// Resolves a bundled model id to its spec; `Ok(None)` when the name is not bundled.
pub fn find_bundled_spec(name: &str) -> Result<Option<ModelSpec>> {
    find_bundled(name)?.map(|model| bundled_spec(&model)).transpose()
}

/// The error for a name that is neither bundled nor a readable path, with the nearest bundled ids.
pub fn unknown_model(name: &str) -> Error {
    let names: Vec<String> = match bundled_models() {
        Ok(models) => models
            .iter()
            .flat_map(|m| std::iter::once(m.id.clone()).chain(m.aliases.iter().cloned()))
            .collect(),
        Err(error) => return error,
    };
    let short_names: Vec<String> = names.iter().map(|n| n.rsplit('/').next().unwrap_or(n).to_string()).collect();
    let wanted_short = name.rsplit('/').next().unwrap_or(name);
    Error::UnknownModel {
        name: name.to_string(),
        suggestions: nearest_names(wanted_short, short_names.iter().map(String::as_str), 3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::arch::Attention;

    fn load_model(name: &str) -> Result<ModelSpec> {
        find_bundled_spec(name)?.ok_or_else(|| unknown_model(name))
    }

    #[test]
    fn every_bundled_model_parses() {
        for model in bundled_models().unwrap() {
            let spec = bundled_spec(&model).unwrap_or_else(|e| panic!("{}: {e}", model.id));
            assert!(spec.total_params() > 1e9, "{}", model.id);
        }
    }

    #[test]
    fn required_ids_resolve_case_insensitively_without_org() {
        for id in [
            "meta-llama/Llama-3.1-8B-Instruct",
            "llama-3.1-70b-instruct",
            "Llama-3.1-405B",
            "meta-llama/Llama-3.3-70B-Instruct",
            "Qwen/Qwen2.5-7B-Instruct",
            "qwen2.5-32b-instruct",
            "Qwen2.5-72B-Instruct",
            "Qwen/Qwen3-8B",
            "Qwen3-14B",
            "QWEN3-32B",
            "Qwen/Qwen3-30B-A3B",
            "Qwen/Qwen3-235B-A22B",
            "Qwen/Qwen3-235B-A22B-FP8",
            "mistralai/Mixtral-8x7B-Instruct-v0.1",
            "deepseek-ai/DeepSeek-V3",
            "deepseek-r1",
            "openai/gpt-oss-20b",
            "gpt-oss-120b",
        ] {
            load_model(id).unwrap_or_else(|e| panic!("{id}: {e}"));
        }
    }

    #[test]
    fn published_parameter_counts() {
        let check = |id: &str, low: f64, high: f64| {
            let billions = load_model(id).unwrap().total_params() / 1e9;
            assert!((low..high).contains(&billions), "{id}: {billions}B");
        };
        check("Llama-3.1-70B-Instruct", 70.0, 71.5);
        check("Llama-3.1-405B-Instruct", 404.0, 407.0);
        check("DeepSeek-V3", 668.0, 675.0);
        check("Qwen3-235B-A22B", 233.0, 237.0);
        check("Qwen3-30B-A3B", 30.0, 31.0);
        check("Mixtral-8x7B-Instruct-v0.1", 46.0, 47.5);
        check("gpt-oss-120b", 115.0, 121.0);
        let active = load_model("DeepSeek-V3").unwrap().active_params() / 1e9;
        assert!((36.0..39.5).contains(&active), "{active}");
    }

    #[test]
    fn architectures_are_read() {
        let deepseek = load_model("DeepSeek-R1").unwrap();
        assert!(matches!(
            deepseek.attention,
            Attention::Mla {
                kv_lora_rank: 512,
                qk_rope_head_dim: 64,
                ..
            }
        ));
        let moe = deepseek.moe.unwrap();
        assert_eq!(
            (moe.n_experts, moe.top_k, moe.n_dense_layers, moe.shared_intermediate),
            (256, 8, 3, 2048)
        );
        assert_eq!(deepseek.weights.experts, crate::model::quant::WeightDtype::Fp8Block);
        let gpt_oss = load_model("gpt-oss-120b").unwrap();
        assert_eq!(gpt_oss.sliding_window.unwrap().n_sliding_layers, 18);
        assert_eq!(gpt_oss.weights.attention, crate::model::quant::WeightDtype::Bf16);
        assert_eq!(gpt_oss.weights.experts, crate::model::quant::WeightDtype::Mxfp4);
        assert!(load_model("Qwen3-8B").unwrap().sliding_window.is_none());
    }

    #[test]
    fn unknown_model_suggests() {
        let error = load_model("Qwen3-33B").unwrap_err().to_string();
        assert!(error.contains("Qwen3-32B"), "{error}");
    }
}
