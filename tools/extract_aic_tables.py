#!/usr/bin/env python3
"""Extract compact SGLang per-op reference tables from AIConfigurator's published data.

Source: the PyPI wheel aiconfigurator-core 0.12.0 (Apache-2.0), unzipped, directory
aiconfigurator_core/systems/data/<gpu>/<family>/<framework>/<version>/*.parquet.

    python3 tools/extract_aic_tables.py --aic /work/aic/wheel/aiconfigurator_core \
        --out data/measured/aic

Needs pandas + pyarrow (not needed by sglsim itself). Every output CSV keeps AIC's own
column names and units (latency in milliseconds, as AIC stores it), drops the columns that
are constant in the subset (framework, version, device, op_name, beam_width, ...) and adds
a few derived columns (message_bytes for the collectives). Subsets are chosen to stay well
under 200 KB per file while keeping a diverse set of shapes; see data/measured/README.md.
"""

import argparse
import os

import pandas as pd

GPUS = ["h100_sxm", "h200_sxm"]

POW2_M = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]
GEMM_GRID = [1024, 2048, 4096, 8192, 16384]
# (n, k) pairs of real models (all present in AIC's grid) on top of the GEMM_GRID square grid
GEMM_EXTRA_NK = [(6144, 4096), (2560, 8192), (8192, 7168), (5120, 5120), (5120, 4096),
                 (12288, 4096), (4096, 12288), (7168, 2048), (2048, 7168), (1536, 7168)]

# (num_heads, num_key_value_heads) per GPU: Llama-3.1-8B TP1/2/4/8 (32/8 ...),
# Llama-70B / Qwen3-32B TP1/2/4/8 (64/8 ...), MHA for reference.
ATTN_HEAD_PAIRS = [(32, 8), (16, 4), (8, 2), (4, 1), (64, 8), (32, 4), (16, 2), (8, 1),
                   (40, 8), (32, 32), (16, 16)]

MOE_CASES = [
    # (kernel_source, moe_dtype, hidden, inter, topk, experts, model hint)
    ("sglang_fused_moe_triton", "bfloat16", 4096, 1536, 8, 128, "Qwen3-235B-A22B"),
    ("sglang_fused_moe_triton", "fp8_block", 4096, 1536, 8, 128, "Qwen3-235B-A22B-FP8"),
    ("sglang_fused_moe_triton", "bfloat16", 2048, 768, 8, 128, "Qwen3-30B-A3B"),
    ("sglang_fused_moe_triton", "fp8_block", 2048, 768, 8, 128, "Qwen3-30B-A3B-FP8"),
    ("sglang_fused_moe_triton", "bfloat16", 4096, 14336, 2, 8, "Mixtral-8x7B"),
    ("sglang_fused_moe_triton", "fp8_block", 4096, 14336, 2, 8, "Mixtral-8x7B-FP8"),
    ("sglang_fused_moe_triton", "fp8_block", 7168, 2048, 8, 256, "DeepSeek-V3"),
    ("sglang_fused_moe_triton", "bfloat16", 5120, 8192, 1, 16, "Llama-4-Scout"),
    ("sglang_fused_moe_triton", "w4a16_mxfp4", 2880, 2880, 4, 128, "gpt-oss-120b"),
    ("sglang_fused_moe_triton", "w4a16_mxfp4", 2880, 2880, 4, 32, "gpt-oss-20b"),
    ("sglang_marlin_moe", "int4_wo", 7168, 2048, 8, 384, "Kimi-K2 (int4)"),
    ("sglang_flashinfer_cutlass_moe", "bfloat16", 2688, 1856, 6, 128, "(flashinfer cutlass)"),
]
MOE_PAR = [(1, 1), (2, 1), (4, 1), (8, 1), (1, 2), (1, 4), (1, 8), (1, 16), (1, 32)]



def rd(aic, gpu, rel):
    return pd.read_parquet(os.path.join(aic, "systems", "data", gpu, rel))


def slim(df, keep_const=()):
    """Drop columns that are constant in this subset (after noting them)."""
    const = {}
    for c in list(df.columns):
        if c == "latency" or c in keep_const:
            continue
        if df[c].nunique(dropna=False) == 1:
            const[c] = df[c].iloc[0]
            df = df.drop(columns=[c])
    return df, const


def write(df, out, gpu, name, sort, report, src, keep_const=()):
    # Some AIC tables (the H100 MLA ones) hold each shape twice, from two collections:
    # keep one row per shape with the mean latency (they differ by ~1% median).
    keys = [c for c in df.columns if c != "latency"]
    n_before = len(df)
    df = df.groupby(keys, as_index=False, dropna=False, sort=False)["latency"].mean()
    if len(df) != n_before:
        print(f"{gpu}_{name}: {n_before - len(df)} duplicate shapes averaged")
    df = df.sort_values(sort).reset_index(drop=True)
    df, const = slim(df, keep_const)
    path = os.path.join(out, f"{gpu}_{name}.csv")
    df.to_csv(path, index=False, float_format="%.6g")
    size = os.path.getsize(path)
    report.append((os.path.basename(path), len(df), size, src, const))
    assert size < 200_000, (path, size)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--aic", default="/work/aic/wheel/aiconfigurator_core")
    ap.add_argument("--out", default="data/measured/aic")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    report = []
    for gpu in GPUS:
        # ---- GEMM ----
        src = "gemm/sglang/0.5.14/gemm_perf.parquet"
        d = rd(args.aic, gpu, src)
        nk = {(n, k) for n in GEMM_GRID for k in GEMM_GRID} | set(GEMM_EXTRA_NK)
        sel = d[d.m.isin(POW2_M) & pd.Series(list(zip(d.n, d.k)), index=d.index).isin(nk)]
        write(sel, args.out, gpu, "gemm", ["gemm_dtype", "n", "k", "m"], report, src,
              keep_const=["kernel_source", "gemm_dtype"])

        # ---- dense attention (context = prefill, generation = decode) ----
        for fam, sortk in [("context_attention", ["kernel_source", "attn_dtype", "kv_cache_dtype",
                                                  "num_heads", "num_key_value_heads",
                                                  "batch_size", "isl"]),
                           ("generation_attention", ["kernel_source", "kv_cache_dtype", "num_heads",
                                                     "num_key_value_heads", "batch_size", "step"])]:
            src = f"attention/sglang/0.5.14/{fam}_perf.parquet"
            d = rd(args.aic, gpu, src)
            pairs = pd.Series(list(zip(d.num_heads, d.num_key_value_heads)), index=d.index)
            sel = d[(d.head_dim == 128) & (d.window_size == 0) & pairs.isin(ATTN_HEAD_PAIRS)]
            write(sel, args.out, gpu, fam, sortk, report, src,
                  keep_const=["kernel_source", "head_dim", "window_size"])

        # ---- MLA (DeepSeek-style) ----
        for fam, heads in [("context_mla", [8, 16, 32, 64, 128]),
                           ("generation_mla", [16, 32, 64, 128])]:
            src = f"mla/sglang/0.5.14/{fam}_perf.parquet"
            d = rd(args.aic, gpu, src)
            sel = d[d.num_heads.isin(heads)]
            sortk = ["kv_cache_dtype", "num_heads", "batch_size", "isl", "step"]
            write(sel, args.out, gpu, fam, sortk, report, src, keep_const=["kernel_source"])

        src = "mla_bmm/sglang/0.5.14/mla_bmm_perf.parquet"
        d = rd(args.aic, gpu, src)
        write(d, args.out, gpu, "mla_bmm", ["op_name", "bmm_dtype", "num_heads", "num_tokens"],
              report, src, keep_const=["kernel_source"])

        # ---- MoE ----
        src = "moe/sglang/0.5.14/moe_perf.parquet"
        d = rd(args.aic, gpu, src)
        parts = []
        for ks, dt, h, inter, topk, e, hint in MOE_CASES:
            s = d[(d.kernel_source == ks) & (d.moe_dtype == dt) & (d.hidden_size == h)
                  & (d.inter_size == inter) & (d.topk == topk) & (d.num_experts == e)
                  & (d.distribution == "balanced") & d.num_tokens.isin(POW2_M)]
            par = pd.Series(list(zip(s.moe_tp_size, s.moe_ep_size)), index=s.index)
            s = s[par.isin(MOE_PAR)].copy()
            s.insert(0, "model_hint", hint)
            parts.append(s)
        sel = pd.concat(parts)
        write(sel, args.out, gpu, "moe", ["model_hint", "moe_dtype", "moe_tp_size", "moe_ep_size",
                                          "num_tokens"], report, src,
              keep_const=["distribution"])

        # ---- collectives ----
        src = "comm/sglang/0.5.14/custom_allreduce_perf.parquet"
        d = rd(args.aic, gpu, src).copy()
        d["message_bytes"] = d.message_size * 2  # bfloat16 elements
        write(d, args.out, gpu, "custom_allreduce", ["backend", "num_gpus", "message_size"],
              report, src, keep_const=["op_name", "allreduce_dtype"])

        src = "comm/nccl/2.29.2/nccl_perf.parquet"
        d = rd(args.aic, gpu, src).copy()
        d["message_bytes"] = d.message_size * d.nccl_dtype.map({"half": 2, "int8": 1})
        write(d, args.out, gpu, "nccl", ["op_name", "nccl_dtype", "num_gpus", "message_size"],
              report, src, keep_const=["kernel_source", "framework", "version"])

    print(f"{'file':40s} {'rows':>6s} {'bytes':>7s}  source; constant columns dropped")
    for name, rows, size, src, const in report:
        print(f"{name:40s} {rows:6d} {size:7d}  {src}; {const}")


if __name__ == "__main__":
    main()
