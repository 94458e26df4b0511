//! Reading what a request names: model configs, coefficient profiles and traces.
//!
//! The only file reading of the entry points; everything below `api` is pure.

use std::path::Path;

use super::error::{invalid, Error, Result};
use crate::model::arch::{ModelSpec, WeightFormats};
use crate::model::coefficients::Coefficients;
use crate::model::model_catalog::{find_bundled_spec, unknown_model};
use crate::model::quant::{KvDtype, WeightDtype};
use crate::sim::limits::{self, MAX_REQUEST_TOKENS};
use crate::sim::workload::RequestSpec;

fn read(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        what: format!("cannot read {what}{}", path.display()),
        source,
    })
}

/// Resolves a model name: a bundled id, or a path to a config.json or a directory holding one.
pub fn load_model(name: &str) -> Result<ModelSpec> {
    if let Some(spec) = find_bundled_spec(name)? {
        return Ok(spec);
    }
    let path = Path::new(name);
    if !path.exists() {
        return Err(unknown_model(name).into());
    }
    let file = if path.is_dir() {
        path.join("config.json")
    } else {
        path.to_path_buf()
    };
    let text = read(&file, "")?;
    Ok(ModelSpec::from_hf_config(name, &text, &file.display().to_string())?)
}

/// Resolves a model name (see [`load_model`]); `dtype` (`--dtype`), when given, replaces the
/// checkpoint's weight format.
pub fn load_model_as(name: &str, dtype: Option<&str>) -> Result<ModelSpec> {
    let mut model = load_model(name)?;
    if let Some(dtype) = dtype {
        model.weights = WeightFormats::uniform(WeightDtype::parse_flag(dtype)?);
    }
    Ok(model)
}

/// `--kv-cache-dtype`: `auto` (None: the checkpoint's) or a KV cache dtype.
pub fn kv_cache_dtype(flag: &str) -> Result<Option<KvDtype>> {
    Ok(match flag {
        "auto" => None,
        other => Some(KvDtype::parse_flag(other)?),
    })
}

/// Reads a coefficient profile (JSON or TOML), or the compiled-in defaults; also returns the
/// coefficients the profile has no value for (they take their defaults: the profile predates them).
pub fn load_coefficients(path: Option<&Path>) -> Result<(Coefficients, Vec<String>)> {
    let Some(path) = path else {
        return Ok((Coefficients::defaults(), Vec::new()));
    };
    let text = read(path, "profile ")?;
    let name = path.display().to_string();
    let is_json = path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
    let (coefficients, filled) = if is_json {
        Coefficients::from_json_filling(&text, &name)?
    } else {
        Coefficients::from_toml_filling(&text, &name)?
    };
    Ok((coefficients, filled.into_iter().map(String::from).collect()))
}

/// The note `predict` prints for coefficients a profile did not have.
pub fn filled_note(path: &Path, filled: &[String]) -> Option<String> {
    if filled.is_empty() {
        return None;
    }
    let one = filled.len() == 1;
    Some(format!(
        "note: profile {} has no value for {}; using the default{} (the profile predates {})",
        path.display(),
        filled.join(", "),
        if one { "" } else { "s" },
        if one { "that coefficient" } else { "those coefficients" }
    ))
}

/// Reads a trace: CSV with a header, or JSON lines. Columns/keys: `arrival_s` (or `arrival_ms`, or
/// `timestamp` in ms as Mooncake traces write it), `isl` (or `input_length`), `osl` (or
/// `output_length`), optional `prefix_group` and `prefix_tokens`. A UTF-8 byte-order mark and
/// quoted fields (as spreadsheets write them) are read as CSV allows; lengths must be whole tokens.
pub fn read_trace(path: &Path) -> Result<Vec<RequestSpec>> {
    let text = read(path, "trace ")?;
    parse_trace(
        &text,
        &path.display().to_string(),
        path.extension().is_some_and(|e| e == "jsonl" || e == "json"),
    )
}

/// Parses a trace's text (see [`read_trace`]); `name` names it in messages, `json` forces JSON lines.
pub fn parse_trace(text: &str, name: &str, json: bool) -> Result<Vec<RequestSpec>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let rows = if json || text.trim_start().starts_with('{') {
        json_rows(text, name)?
    } else {
        csv_rows(text, name)?
    };
    if rows.len() as u64 > limits::MAX_REQUESTS {
        return Err(invalid!(
            "{name}: {} requests; sglsim simulates at most {} in one run",
            rows.len(),
            limits::MAX_REQUESTS
        ));
    }
    let mut requests = Vec::with_capacity(rows.len().min(limits::MAX_REQUESTS as usize));
    for (index, row) in rows.iter().enumerate() {
        requests.push(trace_request(row, name, index + 1)?);
    }
    if requests.is_empty() {
        return Err(invalid!("{name}: the trace has no requests"));
    }
    requests.sort_by(|a, b| a.arrival_s.unwrap_or(0.0).total_cmp(&b.arrival_s.unwrap_or(0.0)));
    Ok(requests)
}

type TraceRow = std::collections::BTreeMap<String, String>;

fn json_rows(text: &str, name: &str) -> Result<Vec<TraceRow>> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            let value: serde_json::Value = serde_json::from_str(line).map_err(|e| invalid!("{name} line {}: not JSON: {e}", index + 1))?;
            let object = value
                .as_object()
                .ok_or_else(|| invalid!("{name} line {}: expected an object", index + 1))?;
            Ok(object
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string().trim_matches('"').to_string()))
                .collect())
        })
        .collect()
}

fn csv_rows(text: &str, name: &str) -> Result<Vec<TraceRow>> {
    let mut reader = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| invalid!("{name}: cannot read the CSV header: {e}"))?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    if header.iter().all(|h| h.is_empty()) {
        return Err(invalid!("{name}: trace is empty"));
    }
    let mut rows = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let record = record.map_err(|e| invalid!("{name} row {}: not a CSV row of {} fields: {e}", index + 1, header.len()))?;
        rows.push(header.iter().cloned().zip(record.iter().map(str::to_string)).collect());
    }
    Ok(rows)
}

/// One trace row as a request: numbers finite and non-negative, lengths whole tokens.
fn trace_request(row: &TraceRow, name: &str, line: usize) -> Result<RequestSpec> {
    let number = |keys: &[&str]| -> Result<Option<f64>> {
        for key in keys {
            if let Some(value) = row.get(*key).filter(|v| !v.is_empty() && v.as_str() != "null") {
                let parsed: f64 = value
                    .parse()
                    .map_err(|_| invalid!("{name} row {line}: {key} = '{value}' is not a number"))?;
                if !(parsed.is_finite() && parsed >= 0.0) {
                    return Err(invalid!("{name} row {line}: {key} = {value} must be a non-negative number"));
                }
                return Ok(Some(parsed));
            }
        }
        Ok(None)
    };
    let tokens = |keys: &[&str]| -> Result<Option<u64>> {
        match number(keys)? {
            Some(value) if value.fract() != 0.0 || value > MAX_REQUEST_TOKENS as f64 => Err(invalid!(
                "{name} row {line}: {} = {value} must be a whole number of tokens, at most {MAX_REQUEST_TOKENS}",
                keys[0]
            )),
            other => Ok(other.map(|value| value as u64)),
        }
    };
    let columns = || row.keys().cloned().collect::<Vec<_>>().join(", ");
    let arrival_s = match (number(&["arrival_s"])?, number(&["arrival_ms", "timestamp"])?) {
        (Some(seconds), _) => seconds,
        (None, Some(ms)) => ms / 1e3,
        (None, None) => {
            return Err(invalid!(
                "{name} row {line}: needs arrival_s, arrival_ms or timestamp (ms); its columns are: {}",
                columns()
            ))
        }
    };
    let isl = tokens(&["isl", "input_length", "input_tokens"])?
        .ok_or_else(|| invalid!("{name} row {line}: needs isl (or input_length); its columns are: {}", columns()))?;
    let osl = tokens(&["osl", "output_length", "output_tokens"])?
        .ok_or_else(|| invalid!("{name} row {line}: needs osl (or output_length); its columns are: {}", columns()))?;
    if isl == 0 || osl == 0 {
        return Err(invalid!("{name} row {line}: isl and osl must be at least 1"));
    }
    Ok(RequestSpec {
        arrival_s: Some(arrival_s),
        isl,
        osl,
        prefix_group: number(&["prefix_group"])?.map(|g| g as u64),
        shared_prefix_tokens: tokens(&["prefix_tokens"])?.unwrap_or(0),
        warmup: false,
    })
}
