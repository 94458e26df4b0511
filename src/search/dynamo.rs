//! Tables for NVIDIA Dynamo: the SLA profiler's interpolation data and the mocker's timing table.
//!
//! Dynamo's SLA planner reads `selected_prefill_interpolation/raw_data.npz` (prefill TTFT by input
//! length, batch 1) and `selected_decode_interpolation/raw_data.npz` (ITL by KV usage and context
//! length), or their JSON twins; its mocker reads `perf_data.npz`. [`profile`] fills all of them
//! from a prefill and a decode [`StepModel`] as Dynamo's profiler would measure them: prefill at
//! ~16 input lengths from 100 tokens to the context limit, decode at ~6 concurrencies for each of
//! 7 context lengths with Dynamo's OSL of 500. The archives are built in memory ([`DynamoProfile::prefill_npz`]
//! and friends); writing them is the caller's job. Times are in milliseconds everywhere.
//!
//! The mocker's table follows Dynamo's own converter
//! (`components/src/dynamo/mocker/utils/planner_profiler_perf_data_converter.py`): a
//! [`MOCKER_RESOLUTION`]² decode grid from 0 active KV tokens and context 1, and prefill TTFT at
//! [`MOCKER_RESOLUTION`] input lengths. The mocker (`lib/mocker/src/common/perf_model.rs`,
//! `PerfModel::from_npz`) reads it with ndarray-interp's `Linear` (prefill) and `Bilinear` (decode)
//! strategies, both with `extrapolate(true)`, and each SGLang scheduler of the mocker
//! (`lib/mocker/src/scheduler/sglang/decode.rs`, one per DP rank) asks for the ITL at
//! (sum of its running requests' sequence lengths, their mean). So a grid cell (`kv`, `ctx`) holds
//! one decode step of an engine whose every DP rank runs `max(1, kv / ctx)` requests holding `kv`
//! KV tokens in all.

use std::io::Cursor;

use ndarray::{Array1, Array2};
use ndarray_npy::NpzWriter;
use serde::Serialize;

use super::error::{Error, Result};
use crate::model::ops::RankBatch;
use crate::model::step::StepModel;

/// Output length Dynamo's profiler uses for decode points, tokens.
pub const DYNAMO_DECODE_OSL_TOKENS: u64 = 500;
/// Input lengths of the prefill sweep.
const N_PREFILL_POINTS: usize = 16;
/// Context lengths of the decode sweep.
const N_DECODE_CONTEXTS: usize = 7;
/// Concurrencies per context length of the decode sweep.
const N_DECODE_CONCURRENCIES: usize = 6;
/// Points per axis of the mocker's table: Dynamo's converter's default `--resolution`.
pub const MOCKER_RESOLUTION: usize = 200;
/// Shortest input of the sweeps, tokens (Dynamo starts at 100).
const MIN_ISL_TOKENS: u64 = 100;

/// Prefill points: `<dir>/selected_prefill_interpolation/raw_data.npz` and `prefill_raw_data.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrefillTable {
    /// Input lengths, tokens, strictly increasing.
    pub prefill_isl: Vec<i64>,
    /// TTFT of one request alone, ms (engine only, no prefix cache).
    pub prefill_ttft: Vec<f64>,
    /// `isl / ttft_ms × 1000 / num_gpus × attention_dp_size`, tokens/s/GPU.
    pub prefill_thpt_per_gpu: Vec<f64>,
}

/// Decode points: `<dir>/selected_decode_interpolation/raw_data.npz` and `decode_raw_data.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecodeTable {
    /// `(isl + osl/2) × concurrency / max_kv_tokens`, in [0, 1].
    pub x_kv_usage: Vec<f64>,
    /// `isl + osl/2`, tokens.
    pub y_context_length: Vec<f64>,
    /// ITL, ms.
    pub z_itl: Vec<f64>,
    /// Output tokens/s per GPU of the whole engine.
    pub z_thpt_per_gpu: Vec<f64>,
    /// KV token capacity of the whole engine.
    pub max_kv_tokens: i64,
}

/// The mocker's timing table: `perf_data.npz`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MockerTable {
    /// Input lengths, tokens (prefilled tokens of a batch, as the mocker asks).
    pub prefill_isl: Vec<f64>,
    /// Prefill TTFT, ms.
    pub prefill_ttft_ms: Vec<f64>,
    /// Active KV tokens of one DP rank's running batch (rows of `decode_itl`), from 0 to the rank's
    /// KV capacity, evenly spaced.
    pub decode_active_kv_tokens: Vec<f64>,
    /// Mean context length of the running batch, tokens (columns of `decode_itl`), from 1 to the
    /// longest context, evenly spaced.
    pub decode_context_length: Vec<f64>,
    /// ITL, ms, indexed `[kv][context]`.
    pub decode_itl: Vec<Vec<f64>>,
}

/// Everything Dynamo reads about one configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DynamoProfile {
    /// Prefill points.
    pub prefill: PrefillTable,
    /// Decode points.
    pub decode: DecodeTable,
    /// The mocker's table.
    pub mocker: MockerTable,
}

/// `n` values from `low` to `high` inclusive, rounded, strictly increasing (fewer when the range is short).
fn linear_points(low: u64, high: u64, n: usize) -> Vec<u64> {
    let mut points: Vec<u64> = (0..n)
        .map(|i| {
            let fraction = if n > 1 { i as f64 / (n - 1) as f64 } else { 0.0 };
            (low as f64 + fraction * high.saturating_sub(low) as f64).round() as u64
        })
        .collect();
    points.dedup();
    points
}

/// `n` concurrencies from 1 to `max` inclusive, geometric, strictly increasing.
fn geometric_points(max: u64, n: usize) -> Vec<u64> {
    let mut points: Vec<u64> = (0..n)
        .map(|i| {
            let fraction = if n > 1 { i as f64 / (n - 1) as f64 } else { 1.0 };
            (max.max(1) as f64).powf(fraction).round() as u64
        })
        .collect();
    points.dedup();
    points
}

/// One decode step of an engine holding `concurrency` requests of `context` tokens, ms.
fn itl_ms(decode: &StepModel, concurrency: u64, context: u64) -> f64 {
    let per_rank = concurrency.div_ceil(u64::from(decode.mapping().dp())).max(1);
    decode.decode_step_s(per_rank, context).total_s * 1e3
}

/// One decode step with `requests` requests holding `kv_tokens` KV tokens in all on every DP rank, ms.
/// Models without sliding windows cost a batch by its context sum; the others by equal contexts.
fn step_ms_by_kv(decode: &StepModel, requests: u64, kv_tokens: u64) -> f64 {
    let dp = decode.mapping().dp() as usize;
    let cost = if decode.model().sliding_window.is_none() {
        let batch = RankBatch::DecodeSummed {
            requests,
            context_sum: kv_tokens,
        };
        decode.forward(&vec![batch; dp])
    } else {
        let context = kv_tokens / requests;
        let remainder = (kv_tokens % requests) as usize;
        let contexts: Vec<u64> = (0..requests as usize).map(|i| context + u64::from(i < remainder)).collect();
        decode.forward(&vec![RankBatch::Decode(&contexts); dp])
    };
    cost.total_s * 1e3
}

/// The mocker's ITL at a grid cell: `max(1, kv / ctx)` requests per DP rank (as Dynamo's converter
/// sets its batch), capped at the rank's `max_running_requests`, holding `kv` tokens; a fractional
/// batch is interpolated linearly between the two whole batches around it, ms.
fn mocker_cell_ms(decode: &StepModel, kv_tokens: f64, context: f64) -> f64 {
    let max_per_rank = (decode.memory().max_running_requests / u64::from(decode.mapping().dp())).max(1);
    let batch = (kv_tokens / context).clamp(1.0, max_per_rank as f64);
    let low = batch.floor() as u64;
    let kv = kv_tokens.round() as u64;
    let low_ms = step_ms_by_kv(decode, low, kv);
    let fraction = batch - low as f64;
    if fraction <= 0.0 {
        return low_ms;
    }
    low_ms + fraction * (step_ms_by_kv(decode, low + 1, kv) - low_ms)
}

/// Longest input the prefill tables reach: the context limit and one rank's KV pool, less 512 tokens.
fn prefill_limit_tokens(prefill: &StepModel) -> u64 {
    prefill
        .model()
        .max_context_tokens
        .min(prefill.memory().kv_capacity_tokens_per_rank)
        .saturating_sub(512)
        .max(MIN_ISL_TOKENS + 1)
}

/// The planner's prefill points: batch 1, ~16 input lengths from 100 tokens.
fn prefill_table(prefill: &StepModel) -> PrefillTable {
    let prefill_gpus = f64::from(prefill.mapping().n_gpus());
    let prefill_dp = f64::from(prefill.mapping().dp());
    let prefill_isl = linear_points(MIN_ISL_TOKENS, prefill_limit_tokens(prefill), N_PREFILL_POINTS);
    let prefill_ttft: Vec<f64> = prefill_isl.iter().map(|&isl| prefill.prefill_s(isl) * 1e3).collect();
    let prefill_thpt_per_gpu = prefill_isl
        .iter()
        .zip(&prefill_ttft)
        .map(|(&isl, &ttft_ms)| isl as f64 / ttft_ms * 1e3 / prefill_gpus * prefill_dp)
        .collect();
    PrefillTable {
        prefill_isl: prefill_isl.iter().map(|&isl| isl as i64).collect(),
        prefill_ttft,
        prefill_thpt_per_gpu,
    }
}

/// The planner's decode points: contexts isl + osl/2, concurrencies up to what KV and the request limit allow.
fn decode_table(decode: &StepModel) -> DecodeTable {
    let osl = DYNAMO_DECODE_OSL_TOKENS;
    let memory = decode.memory();
    let max_kv_tokens = memory.kv_capacity_tokens;
    let decode_gpus = f64::from(decode.mapping().n_gpus());
    let decode_limit = decode
        .model()
        .max_context_tokens
        .min(memory.kv_capacity_tokens_per_rank)
        .saturating_sub(osl)
        .max(MIN_ISL_TOKENS + 1);
    let mut table = DecodeTable {
        x_kv_usage: Vec::new(),
        y_context_length: Vec::new(),
        z_itl: Vec::new(),
        z_thpt_per_gpu: Vec::new(),
        max_kv_tokens: max_kv_tokens as i64,
    };
    for isl in linear_points(MIN_ISL_TOKENS, decode_limit, N_DECODE_CONTEXTS) {
        let context = isl + osl / 2;
        let max_concurrency = (max_kv_tokens / (isl + osl)).min(memory.max_running_requests).max(1);
        for concurrency in geometric_points(max_concurrency, N_DECODE_CONCURRENCIES) {
            let itl = itl_ms(decode, concurrency, context);
            table.x_kv_usage.push((context * concurrency) as f64 / max_kv_tokens as f64);
            table.y_context_length.push(context as f64);
            table.z_itl.push(itl);
            table.z_thpt_per_gpu.push(concurrency as f64 / (itl * 1e-3) / decode_gpus);
        }
    }
    table
}

/// Shortest context of the mocker's grid after its first column (context 1), tokens.
const MOCKER_MIN_CONTEXT_TOKENS: u64 = 128;

/// Columns of the mocker's grid: context 1 (as Dynamo's converter starts), then geometric from
/// 128 tokens to `max_context`. A decode batch's cost follows its request count, `kv / context`, so
/// a column step of a fixed fraction of the context keeps a fixed relative error in the batch size
/// that the mocker's bilinear rule blends; evenly spaced columns 400 tokens apart would blend
/// batches a third apart at a 1,250-token context.
fn mocker_context_axis(max_context: u64) -> Vec<f64> {
    let mut axis = vec![1.0];
    axis.extend(geomspace_tokens(MOCKER_MIN_CONTEXT_TOKENS, max_context, MOCKER_RESOLUTION - 1));
    axis
}

/// Rows of the mocker's grid: 0 active KV tokens (as Dynamo's converter starts), then geometric
/// from 128 tokens to one rank's KV capacity, so that one request of a short context and a large
/// batch are both resolved (evenly spaced rows would put ~5 requests of 1,250 tokens between the
/// first two rows, and a MoE batch of 5 activates ~5× the experts of one request).
fn mocker_kv_axis(capacity_tokens: u64) -> Vec<f64> {
    let mut axis = vec![0.0];
    axis.extend(geomspace_tokens(MOCKER_MIN_CONTEXT_TOKENS, capacity_tokens, MOCKER_RESOLUTION - 1));
    axis
}

/// `n` whole numbers from `low` to `high`, each a constant ratio above the one before (rounded,
/// strictly increasing: fewer when the range is short).
fn geomspace_tokens(low: u64, high: u64, n: usize) -> Vec<f64> {
    let ratio = (high.max(low + 1) as f64 / low.max(1) as f64).powf(1.0 / (n.max(2) - 1) as f64);
    let mut points: Vec<u64> = (0..n).map(|i| (low.max(1) as f64 * ratio.powi(i as i32)).round() as u64).collect();
    points.dedup();
    points.into_iter().map(|p| p as f64).collect()
}

/// The mocker's table: prefill TTFT at [`MOCKER_RESOLUTION`] input lengths from 100 tokens,
/// geometrically spaced (a short prefill is launch-bound and flat, a long one grows with its
/// tokens, so the kink sits at a few hundred tokens where a geometric axis is dense, and each step
/// adds ~6% to the input); decode ITL on Dynamo's converter's grid, from 0 KV tokens to one rank's
/// capacity × from context 1 to the longest context, both evenly spaced.
fn mocker_table(prefill: &StepModel, decode: &StepModel) -> MockerTable {
    let prefill_isl = geomspace_tokens(MIN_ISL_TOKENS, prefill_limit_tokens(prefill), MOCKER_RESOLUTION);
    let prefill_ttft_ms = prefill_isl.iter().map(|&isl| prefill.prefill_s(isl.round() as u64) * 1e3).collect();
    let memory = decode.memory();
    let max_context = decode.model().max_context_tokens.min(memory.kv_capacity_tokens_per_rank).max(2);
    let decode_active_kv_tokens = mocker_kv_axis(memory.kv_capacity_tokens_per_rank);
    let decode_context_length = mocker_context_axis(max_context);
    let decode_itl = decode_active_kv_tokens
        .iter()
        .map(|&kv| {
            decode_context_length
                .iter()
                .map(|&context| mocker_cell_ms(decode, kv, context))
                .collect()
        })
        .collect();
    MockerTable {
        prefill_isl,
        prefill_ttft_ms,
        decode_active_kv_tokens,
        decode_context_length,
        decode_itl,
    }
}

/// Computes the tables of a configuration (the same model twice when aggregated).
pub fn profile(prefill: &StepModel, decode: &StepModel) -> DynamoProfile {
    DynamoProfile {
        prefill: prefill_table(prefill),
        decode: decode_table(decode),
        mocker: mocker_table(prefill, decode),
    }
}

fn npz_error(archive: &str) -> impl Fn(ndarray_npy::WriteNpzError) -> Error + '_ {
    move |error| Error::Npz {
        archive: archive.into(),
        message: error.to_string(),
    }
}

/// Path of the prefill archive inside a profile directory.
pub const PREFILL_NPZ_PATH: &str = "selected_prefill_interpolation/raw_data.npz";
/// Path of the decode archive inside a profile directory.
pub const DECODE_NPZ_PATH: &str = "selected_decode_interpolation/raw_data.npz";
/// Path of the mocker's archive inside a profile directory.
pub const MOCKER_NPZ_PATH: &str = "perf_data.npz";

impl DynamoProfile {
    /// `selected_prefill_interpolation/raw_data.npz` (stored, as `np.savez` writes).
    pub fn prefill_npz(&self) -> Result<Vec<u8>> {
        let error = npz_error(PREFILL_NPZ_PATH);
        let mut npz = NpzWriter::new(Cursor::new(Vec::new()));
        npz.add_array("prefill_isl", &Array1::from(self.prefill.prefill_isl.clone()))
            .map_err(&error)?;
        npz.add_array("prefill_ttft", &Array1::from(self.prefill.prefill_ttft.clone()))
            .map_err(&error)?;
        npz.add_array("prefill_thpt_per_gpu", &Array1::from(self.prefill.prefill_thpt_per_gpu.clone()))
            .map_err(&error)?;
        Ok(npz.finish().map_err(&error)?.into_inner())
    }

    /// `selected_decode_interpolation/raw_data.npz`.
    pub fn decode_npz(&self) -> Result<Vec<u8>> {
        let error = npz_error(DECODE_NPZ_PATH);
        let decode = &self.decode;
        let mut npz = NpzWriter::new(Cursor::new(Vec::new()));
        for (name, values) in [
            ("x_kv_usage", &decode.x_kv_usage),
            ("y_context_length", &decode.y_context_length),
            ("z_itl", &decode.z_itl),
            ("z_thpt_per_gpu", &decode.z_thpt_per_gpu),
        ] {
            npz.add_array(name, &Array1::from(values.clone())).map_err(&error)?;
        }
        npz.add_array("max_kv_tokens", &Array1::from(vec![decode.max_kv_tokens]))
            .map_err(&error)?;
        Ok(npz.finish().map_err(&error)?.into_inner())
    }

    /// `perf_data.npz` for Dynamo's mocker (`--planner-profile-data`).
    pub fn mocker_npz(&self) -> Result<Vec<u8>> {
        let error = npz_error(MOCKER_NPZ_PATH);
        let mocker = &self.mocker;
        let mut npz = NpzWriter::new(Cursor::new(Vec::new()));
        for (name, values) in [
            ("prefill_isl", &mocker.prefill_isl),
            ("prefill_ttft_ms", &mocker.prefill_ttft_ms),
            ("decode_active_kv_tokens", &mocker.decode_active_kv_tokens),
            ("decode_context_length", &mocker.decode_context_length),
        ] {
            npz.add_array(name, &Array1::from(values.clone())).map_err(&error)?;
        }
        let n_rows = mocker.decode_itl.len();
        let n_columns = mocker.decode_context_length.len();
        let flat: Vec<f64> = mocker.decode_itl.iter().flatten().copied().collect();
        let grid = Array2::from_shape_vec((n_rows, n_columns), flat).map_err(|e| Error::Npz {
            archive: MOCKER_NPZ_PATH.into(),
            message: e.to_string(),
        })?;
        npz.add_array("decode_itl", &grid).map_err(&error)?;
        Ok(npz.finish().map_err(&error)?.into_inner())
    }

    /// `prefill_raw_data.json`: the prefill keys as lists.
    pub fn prefill_json(&self) -> String {
        serde_json::to_string_pretty(&self.prefill).unwrap_or_default()
    }

    /// `decode_raw_data.json`: the decode keys as lists, `max_kv_tokens` a plain integer.
    pub fn decode_json(&self) -> String {
        serde_json::to_string_pretty(&self.decode).unwrap_or_default()
    }
}
