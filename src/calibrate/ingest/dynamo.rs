//! Dynamo SLA-profiler archives (`raw_data.npz`) and their JSON twins.

use super::*;

/// Points from one Dynamo archive, with the model its metadata names.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamoParsed {
    /// Prefill or decode.
    pub kind: SourceKind,
    /// The points.
    pub points: Vec<MeasuredPoint>,
    /// Rows skipped, and why.
    pub warnings: Vec<String>,
}

const PREFILL_DIR: &str = "selected_prefill_interpolation";
const DECODE_DIR: &str = "selected_decode_interpolation";

pub(super) fn is_dynamo_dir(dir: &Path) -> bool {
    dir.join(PREFILL_DIR).join("raw_data.npz").is_file()
        || dir.join(DECODE_DIR).join("raw_data.npz").is_file()
        || dir.join("prefill_raw_data.json").is_file()
        || dir.join("decode_raw_data.json").is_file()
}

pub(super) fn ingest_dynamo_dir(dir: &Path, out: &mut Ingested) {
    for (sub, twin) in [(PREFILL_DIR, "prefill_raw_data.json"), (DECODE_DIR, "decode_raw_data.json")] {
        let npz = dir.join(sub).join("raw_data.npz");
        if npz.is_file() {
            ingest_file(&npz, out, true);
        } else if dir.join(twin).is_file() {
            ingest_file(&dir.join(twin), out, true);
        }
    }
}

pub(super) fn add_dynamo(path: &Path, parsed: DynamoParsed, out: &mut Ingested) {
    out.warnings.extend(parsed.warnings);
    out.add(path, parsed.kind, parsed.points);
}

fn npz_error(path: &str) -> impl Fn(ndarray_npy::ReadNpzError) -> Error + '_ {
    move |error| {
        let text = error.to_string();
        let message = if text.to_ascii_lowercase().contains("compression") {
            format!("{text}: deflate-compressed archives (np.savez_compressed) are not read by this build; re-save with np.savez")
        } else {
            text
        };
        Error::BadSource {
            path: path.into(),
            message,
        }
    }
}

/// Reads one numeric array of an archive as f64 (int64 and float64 both accepted), flattened.
fn npz_array(archive: &mut NpzReader<Cursor<&[u8]>>, name: &str, path: &str) -> Result<Vec<f64>> {
    let as_f64: std::result::Result<ArrayD<f64>, _> = archive.by_name::<OwnedRepr<f64>, IxDyn>(name);
    match as_f64 {
        Ok(array) => Ok(array.iter().copied().collect()),
        Err(_) => {
            let array: ArrayD<i64> = archive.by_name::<OwnedRepr<i64>, IxDyn>(name).map_err(npz_error(path))?;
            Ok(array.iter().map(|&v| v as f64).collect())
        }
    }
}

/// Parses a Dynamo profiler archive (`raw_data.npz`): prefill or decode, told apart by its keys.
pub fn parse_dynamo_npz(bytes: &[u8], path: &str) -> Result<DynamoParsed> {
    let mut archive = NpzReader::new(Cursor::new(bytes)).map_err(npz_error(path))?;
    let names: Vec<String> = archive
        .names()
        .map_err(npz_error(path))?
        .into_iter()
        .map(|n| n.trim_end_matches(".npy").to_string())
        .collect();
    let has = |key: &str| names.iter().any(|n| n == key);
    if has("prefill_isl") && has("prefill_ttft") {
        let isl = npz_array(&mut archive, "prefill_isl", path)?;
        let ttft = npz_array(&mut archive, "prefill_ttft", path)?;
        dynamo_prefill(&isl, &ttft, path)
    } else if has("x_kv_usage") && has("y_context_length") && has("z_itl") && has("max_kv_tokens") {
        let kv_usage = npz_array(&mut archive, "x_kv_usage", path)?;
        let context = npz_array(&mut archive, "y_context_length", path)?;
        let itl = npz_array(&mut archive, "z_itl", path)?;
        let max_kv = npz_array(&mut archive, "max_kv_tokens", path)?;
        dynamo_decode(&kv_usage, &context, &itl, &max_kv, path)
    } else {
        Err(Error::BadSource {
            path: path.into(),
            message: format!(
                "keys {names:?} are neither Dynamo prefill (prefill_isl, prefill_ttft) nor decode (x_kv_usage, y_context_length, z_itl, max_kv_tokens)"
            ),
        })
    }
}

/// Parses a Dynamo JSON twin (`prefill_raw_data.json` or `decode_raw_data.json`).
pub fn parse_dynamo_json(text: &str, path: &str) -> Result<DynamoParsed> {
    let value: Value = serde_json::from_str(text).map_err(|e| Error::BadSource {
        path: path.into(),
        message: format!("not JSON: {e}"),
    })?;
    let list = |key: &str| -> Result<Vec<f64>> {
        match value.get(key) {
            Some(Value::Array(items)) => Ok(items.iter().map(|v| number(v).unwrap_or(f64::NAN)).collect()),
            Some(other) => number(other).map(|v| vec![v]).ok_or_else(|| Error::BadSource {
                path: path.into(),
                message: format!("{key} is neither a list nor a number"),
            }),
            None => Err(Error::BadSource {
                path: path.into(),
                message: format!("no key {key}"),
            }),
        }
    };
    if value.get("prefill_isl").is_some() {
        dynamo_prefill(&list("prefill_isl")?, &list("prefill_ttft")?, path)
    } else {
        dynamo_decode(
            &list("x_kv_usage")?,
            &list("y_context_length")?,
            &list("z_itl")?,
            &list("max_kv_tokens")?,
            path,
        )
    }
}

fn length_mismatch(path: &str, what: &str, lengths: &[usize]) -> Error {
    Error::BadSource {
        path: path.into(),
        message: format!("{what} arrays differ in length: {lengths:?}"),
    }
}

fn dynamo_prefill(isl: &[f64], ttft_ms: &[f64], path: &str) -> Result<DynamoParsed> {
    if isl.len() != ttft_ms.len() {
        return Err(length_mismatch(path, "prefill_isl and prefill_ttft", &[isl.len(), ttft_ms.len()]));
    }
    let mut parsed = DynamoParsed {
        kind: SourceKind::DynamoPrefill,
        points: Vec::new(),
        warnings: Vec::new(),
    };
    for (row, (&isl, &ttft)) in isl.iter().zip(ttft_ms).enumerate() {
        let Some(isl_tokens) = positive_u64(Some(isl)) else {
            parsed
                .warnings
                .push(format!("{path}: row {row}: prefill_isl {isl} is not a positive length"));
            continue;
        };
        if !(ttft.is_finite() && ttft > 0.0) {
            parsed
                .warnings
                .push(format!("{path}: row {row}: prefill_ttft {ttft} ms is not a positive time"));
            continue;
        }
        parsed.points.push(MeasuredPoint {
            workload: Workload::PrefillAlone { isl_tokens },
            measured: MeasuredMetrics {
                ttft_ms: Some(Summary::mean_only(ttft)),
                ..MeasuredMetrics::default()
            },
            provenance: Provenance {
                path: path.into(),
                kind: SourceKind::DynamoPrefill,
                label: format!("isl={isl_tokens}"),
            },
        });
    }
    Ok(parsed)
}

fn dynamo_decode(kv_usage: &[f64], context: &[f64], itl_ms: &[f64], max_kv: &[f64], path: &str) -> Result<DynamoParsed> {
    if kv_usage.len() != context.len() || kv_usage.len() != itl_ms.len() {
        return Err(length_mismatch(
            path,
            "x_kv_usage, y_context_length and z_itl",
            &[kv_usage.len(), context.len(), itl_ms.len()],
        ));
    }
    let rows_of_configs = max_kv.len();
    if rows_of_configs != 1 {
        return Err(Error::BadSource {
            path: path.into(),
            message: format!(
                "{rows_of_configs} max_kv_tokens values: archives of several configurations (pre-swept tables) are not read; give one configuration's raw_data.npz"
            ),
        });
    }
    let max_kv_tokens = max_kv[0];
    if !(max_kv_tokens.is_finite() && max_kv_tokens >= 1.0) {
        return Err(Error::BadSource {
            path: path.into(),
            message: format!("max_kv_tokens {max_kv_tokens} is not a positive token count"),
        });
    }
    let mut parsed = DynamoParsed {
        kind: SourceKind::DynamoDecode,
        points: Vec::new(),
        warnings: Vec::new(),
    };
    for row in 0..kv_usage.len() {
        let (usage, context, itl) = (kv_usage[row], context[row], itl_ms[row]);
        if !(usage.is_finite() && (0.0..=1.5).contains(&usage) && context.is_finite() && context >= 1.0) {
            parsed
                .warnings
                .push(format!("{path}: row {row}: kv usage {usage} or context {context} out of range"));
            continue;
        }
        if !(itl.is_finite() && itl > 0.0) {
            parsed
                .warnings
                .push(format!("{path}: row {row}: z_itl {itl} ms is not a positive time"));
            continue;
        }
        let batch = ((usage * max_kv_tokens / context).round() as u64).max(1);
        let context_tokens = context.round() as u64;
        parsed.points.push(MeasuredPoint {
            workload: Workload::DecodeStep { batch, context_tokens },
            measured: MeasuredMetrics {
                itl_ms: Some(Summary::mean_only(itl)),
                ..MeasuredMetrics::default()
            },
            provenance: Provenance {
                path: path.into(),
                kind: SourceKind::DynamoDecode,
                label: format!("batch={batch} context={context_tokens}"),
            },
        });
    }
    Ok(parsed)
}
