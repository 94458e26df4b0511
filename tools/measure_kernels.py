#!/usr/bin/env python3
"""Measure GPU kernel timings that ground sglsim's roofline coefficients.

Single GPU (GEMM bf16/fp8, SDPA attention prefill/decode, a D2D copy):

    python tools/measure_kernels.py --out DIR [--quick]

Collectives (NCCL all_reduce / all_gather_into_tensor / reduce_scatter_tensor /
all_to_all_single), one process per GPU; rank 0 appends to DIR/collectives.csv so runs for several N can share it:

    torchrun --nproc_per_node=N tools/measure_kernels.py --collectives --out DIR [--quick]

Only Python 3 + PyTorch are needed. Timing method (the CSV's `method` column says which
was used for each row):

* ``cuda_graph_loop(L=..,bufs=..)``: L launches of the kernel are captured back to back
  in one CUDA graph, rotating over `bufs` copies of the weight / KV-cache so that the data
  are not L2-resident between launches (as in a real model, where every layer has its own
  weights). The graph is replayed >= 20 times, each replay bracketed by CUDA events; the
  reported time is median(replay time) / L. This is the per-kernel time inside a CUDA graph
  (what SGLang's decode path sees), with launch gaps hidden.
* ``eager_loop(L=..,bufs=..)``: the same but eager launches (used when graph capture fails).
* ``events_per_call``: one launch between two CUDA events, >= 20 repeats, median. Used for
  kernels long enough (estimated >= 100 us) that launch overhead is negligible.
* collectives: ``eager_loop(L=..)``: L back-to-back collectives between two events,
  repeated >= 20 times, median / L; the reported time_us is the max over ranks of each
  rank's median (time_us_rank0 is rank 0's). Sizes up to 64 MiB are also timed as
  ``cuda_graph_loop(L=..)``: the same L collectives captured in one CUDA graph and replayed
  (no host launch overhead; what a CUDA-graph decode step sees). --no-coll-graph skips it.

The NVLink-multicast switches (NCCL_NVLS_ENABLE etc.) are left as the environment sets them.

All inputs are random (never zeros). Times are in microseconds.
"""

import argparse
import csv
import datetime
import math
import os
import statistics
import subprocess
import sys
import time
import traceback

import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------
# Shapes
# ----------------------------------------------------------------------------------------

GEMM_MS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]
LM_HEAD_MS = [1, 2, 4, 8, 16, 32, 64, 128, 256]

# (model tag, tp, layer, N, K)   y[M,N] = x[M,K] @ W[N,K]^T
GEMM_SHAPES = [
    ("llama3.1-8b", 1, "qkv", 6144, 4096),
    ("llama3.1-8b", 1, "o", 4096, 4096),
    ("llama3.1-8b", 1, "gate_up", 28672, 4096),
    ("llama3.1-8b", 1, "down", 4096, 14336),
    ("llama3.1-70b", 4, "qkv", 2560, 8192),
    ("llama3.1-70b", 4, "o", 8192, 2048),
    ("llama3.1-70b", 4, "gate_up", 14336, 8192),
    ("llama3.1-70b", 4, "down", 8192, 7168),
    # Qwen3-32B: hidden 5120, 64 q heads, 8 kv heads, head_dim 128, intermediate 25600.
    # TP2: q 32 heads, kv 4 heads -> qkv N = (32 + 2*4)*128 = 5120; o K = 32*128 = 4096.
    ("qwen3-32b", 2, "qkv", 5120, 5120),
    ("qwen3-32b", 2, "o", 5120, 4096),
    ("qwen3-32b", 2, "gate_up", 25600, 5120),
    ("qwen3-32b", 2, "down", 5120, 12800),
]
LM_HEAD_SHAPE = ("llama3.1-8b", 1, "lm_head", 128256, 4096)
SQUARE_SHAPE = ("square", 1, "square8192", 8192, 8192)  # M = 8192 only: peak check

PREFILL_SEQS = [512, 1024, 2048, 4096, 8192, 16384, 32768]
DECODE_BATCHES = [1, 8, 32, 128]
DECODE_CONTEXTS = [1024, 4096, 16384]
ATT_HEADS, ATT_KV_HEADS, ATT_HEAD_DIM = 32, 8, 128

COLL_SIZES = [8 << 10 << (2 * i) for i in range(8)]  # 8 KiB .. 128 MiB, powers of 4
COLL_SIZES = sorted(set(COLL_SIZES + [64 << 20, 256 << 20]))

KERNEL_FIELDS = [
    "gpu_name", "driver", "torch", "cuda", "date", "op", "backend", "dtype", "model", "tp",
    "layer", "m", "n", "k", "batch", "seq", "context", "heads", "kv_heads", "head_dim",
    "time_us", "tflops", "gb_s", "bytes_moved", "flops", "method", "note",
]
COLL_FIELDS = [
    "gpu_name", "driver", "torch", "cuda", "nccl", "date", "op", "dtype", "n_ranks", "bytes",
    "bytes_per_rank", "time_us", "time_us_rank0", "algbw_gb_s", "busbw_gb_s", "method", "note",
]

# Data are rotated over enough copies to exceed this many bytes (several times the L2:
# 50 MB on H100, 60 MB on H200), so that graph-loop timings do not measure the L2.
ROTATE_BYTES = 256 << 20
MAX_BUFS = 64
GRAPH_TARGET_US = 1000.0  # aim for ~1 ms per replay in loop mode
LOOP_THRESHOLD_US = 100.0
GRAPH_COLL_MAX = 64 << 20  # collectives also timed inside a CUDA graph up to this size  # estimated kernel time under which the loop modes are used

# Rough ceilings used only to pick a timing method (not reported).
EST_TFLOPS = {"bf16": 700.0, "fp8": 1300.0}
EST_GBS = 3000.0


def log(*a):
    print(*a, flush=True)


# ----------------------------------------------------------------------------------------
# Environment
# ----------------------------------------------------------------------------------------


def env_info():
    try:
        drv = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30,
        ).stdout.strip().splitlines()[0].strip()
    except Exception as e:  # noqa: BLE001
        drv = f"unknown({type(e).__name__})"
    nccl = ""
    try:
        v = torch.cuda.nccl.version()
        nccl = ".".join(str(x) for x in v) if isinstance(v, tuple) else str(v)
    except Exception:  # noqa: BLE001
        pass
    return {
        "gpu_name": torch.cuda.get_device_name(),
        "driver": drv,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "nccl": nccl,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


# ----------------------------------------------------------------------------------------
# Timing helpers
# ----------------------------------------------------------------------------------------


def _median_events(pairs):
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) * 1000.0 for s, e in pairs)  # us


def time_per_call(fn, warmup, reps):
    for _ in range(warmup):
        fn(0)
    torch.cuda.synchronize()
    pairs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
             for _ in range(reps)]
    for s, e in pairs:
        s.record()
        fn(0)
        e.record()
    return _median_events(pairs), "events_per_call"


def time_loop(fn, n_launch, nbufs, warmup, reps, use_graph=True):
    """fn(i) launches one kernel on buffer set i % nbufs. Returns (us per kernel, method)."""
    torch.cuda.synchronize()
    if use_graph:
        try:
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for i in range(min(nbufs, 3) + 2):
                    fn(i % nbufs)
            torch.cuda.current_stream().wait_stream(s)
            torch.cuda.synchronize()
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                for i in range(n_launch):
                    fn(i % nbufs)
            for _ in range(max(2, warmup)):
                g.replay()
            torch.cuda.synchronize()
            pairs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                     for _ in range(reps)]
            for st, en in pairs:
                st.record()
                g.replay()
                en.record()
            t = _median_events(pairs) / n_launch
            del g
            return t, f"cuda_graph_loop(L={n_launch},bufs={nbufs})"
        except Exception as e:  # noqa: BLE001
            log(f"    graph capture failed ({type(e).__name__}: {str(e)[:120]}); eager loop")
            torch.cuda.synchronize()
    for i in range(max(warmup, 2) * nbufs):
        fn(i % nbufs)
    torch.cuda.synchronize()
    pairs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
             for _ in range(reps)]
    for st, en in pairs:
        st.record()
        for i in range(n_launch):
            fn(i % nbufs)
        en.record()
    return _median_events(pairs) / n_launch, f"eager_loop(L={n_launch},bufs={nbufs})"


def n_bufs_for(bytes_per_call):
    return int(max(1, min(MAX_BUFS, math.ceil(ROTATE_BYTES / max(bytes_per_call, 1)))))


def timed(fn, est_us, nb, warmup, reps):
    """Pick a method from the estimated time; fn(i) uses buffer set i % nb."""
    if est_us >= LOOP_THRESHOLD_US:
        return time_per_call(fn, warmup, reps)
    n_launch = int(max(nb, min(512, math.ceil(GRAPH_TARGET_US / max(est_us, 1.0)))))
    n_launch = int(math.ceil(n_launch / nb) * nb)
    return time_loop(fn, n_launch, nb, warmup, reps)


# ----------------------------------------------------------------------------------------
# GEMM
# ----------------------------------------------------------------------------------------

FP8 = getattr(torch, "float8_e4m3fn", None)


def fp8_available():
    if FP8 is None or not hasattr(torch, "_scaled_mm"):
        return False, "torch has no float8_e4m3fn/_scaled_mm"
    if torch.cuda.get_device_capability() < (8, 9):
        return False, "fp8 needs sm_89+"
    try:
        a = torch.randn(16, 32, device="cuda").to(FP8)
        b = torch.randn(16, 32, device="cuda").to(FP8)
        one = torch.ones((), device="cuda", dtype=torch.float32)
        torch._scaled_mm(a, b.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
        torch.cuda.synchronize()
        return True, ""
    except Exception as e:  # noqa: BLE001
        return False, f"_scaled_mm failed: {type(e).__name__}: {str(e)[:100]}"


def gemm_check(dtype):
    """Relative error of one GEMM vs an fp32 reference on the same (dequantized) inputs."""
    M, N, K = 64, 512, 1024
    x = torch.randn(M, K, device="cuda")
    w = torch.randn(N, K, device="cuda") / math.sqrt(K)
    if dtype == "bf16":
        xb, wb = x.bfloat16(), w.bfloat16()
        out = F.linear(xb, wb).float()
        ref = xb.float() @ wb.float().t()
    else:
        sa = (x.abs().max() / 448.0).float()
        sb = (w.abs().max() / 448.0).float()
        xq = (x / sa).to(FP8)
        wq = (w / sb).to(FP8)
        out = torch._scaled_mm(xq, wq.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16).float()
        ref = (xq.float() * sa) @ (wq.float() * sb).t()
    return ((out - ref).norm() / ref.norm()).item()


def run_gemms(env, rows, quick, warmup, reps, fp8_ok, fp8_note):
    dtypes = ["bf16"] + (["fp8"] if fp8_ok else [])
    if not fp8_ok:
        log(f"  fp8 skipped: {fp8_note}")
        rows.append(dict(env, op="gemm", dtype="fp8", note=f"SKIPPED: {fp8_note}"))
    for dt in dtypes:
        try:
            log(f"  check {dt}: rel err vs fp32 ref = {gemm_check(dt):.2e}")
        except Exception as e:  # noqa: BLE001
            log(f"  check {dt} failed: {e}")
    one = torch.ones((), device="cuda", dtype=torch.float32)
    ms = GEMM_MS if not quick else [1, 4, 16, 64, 256, 1024, 4096, 16384]
    plan = [(s, ms) for s in GEMM_SHAPES]
    plan.append((LM_HEAD_SHAPE, LM_HEAD_MS if not quick else [1, 16, 256]))
    plan.append((SQUARE_SHAPE, [8192]))
    for dt in dtypes:
        esize = 2 if dt == "bf16" else 1
        for (model, tp, layer, N, K), mlist in plan:
            wbytes = N * K * esize
            nb = 1
            max_m = max(mlist)
            # weights: enough copies to defeat the L2 for the loop modes (small M)
            est_small = max(2 * max(1, min(mlist)) * N * K / (EST_TFLOPS[dt] * 1e6),
                            wbytes / (EST_GBS * 1e3))
            if est_small < LOOP_THRESHOLD_US:
                nb = n_bufs_for(wbytes)
            try:
                if dt == "bf16":
                    Ws = [torch.randn(N, K, device="cuda", dtype=torch.bfloat16) for _ in range(nb)]
                else:
                    Ws = [torch.randn(N, K, device="cuda", dtype=torch.bfloat16).to(FP8)
                          for _ in range(nb)]
                xfull = torch.randn(max_m, K, device="cuda", dtype=torch.bfloat16)
                if dt == "fp8":
                    xfull = xfull.to(FP8)
            except torch.cuda.OutOfMemoryError as e:
                log(f"  OOM allocating {model} {layer} {dt}: {e}")
                torch.cuda.empty_cache()
                continue
            for M in mlist:
                flops = 2.0 * M * N * K
                bytes_moved = (M * K + N * K) * esize + M * N * 2  # output bf16
                est = max(flops / (EST_TFLOPS[dt] * 1e6), bytes_moved / (EST_GBS * 1e3))
                x = xfull[:M]
                note = ""
                if dt == "bf16":
                    def fn(i, x=x):
                        F.linear(x, Ws[i % nb])
                else:
                    def fn(i, x=x):
                        torch._scaled_mm(x, Ws[i % nb].t(), scale_a=one, scale_b=one,
                                         out_dtype=torch.bfloat16)
                    try:
                        fn(0)
                        torch.cuda.synchronize()
                    except Exception as e:  # noqa: BLE001
                        # cuBLASLt fp8 may want M % 16 == 0: pad the rows.
                        mp = int(math.ceil(M / 16) * 16)
                        xp = torch.zeros(mp, K, device="cuda", dtype=torch.bfloat16).to(FP8)
                        xp[:M] = x

                        def fn(i, x=xp):
                            torch._scaled_mm(x, Ws[i % nb].t(), scale_a=one, scale_b=one,
                                             out_dtype=torch.bfloat16)
                        note = f"m padded to {mp} ({type(e).__name__})"
                try:
                    t_us, method = timed(fn, est, nb, warmup, reps)
                    if nb == 1 and method.startswith("cuda_graph"):
                        note = (note + "; " if note else "") + "weights not rotated"
                except Exception as e:  # noqa: BLE001
                    log(f"  FAIL gemm {dt} {model} {layer} M={M}: {e}")
                    rows.append(dict(env, op="gemm", dtype=dt, model=model, tp=tp, layer=layer,
                                     m=M, n=N, k=K, note=f"ERROR {type(e).__name__}: {str(e)[:150]}"))
                    torch.cuda.synchronize()
                    continue
                rows.append(dict(
                    env, op="gemm", backend="cublas(F.linear)" if dt == "bf16" else
                    "cublaslt(torch._scaled_mm,e4m3,per-tensor scales)",
                    dtype=dt, model=model, tp=tp, layer=layer, m=M, n=N, k=K,
                    time_us=f"{t_us:.3f}", tflops=f"{flops / t_us / 1e6:.2f}",
                    gb_s=f"{bytes_moved / t_us / 1e3:.1f}", bytes_moved=int(bytes_moved),
                    flops=int(flops), method=method, note=note))
                log(f"  gemm {dt:4s} {model:13s} {layer:10s} M={M:6d} N={N:6d} K={K:6d} "
                    f"{t_us:10.2f} us {flops / t_us / 1e6:8.1f} TFLOP/s "
                    f"{bytes_moved / t_us / 1e3:8.1f} GB/s  {method}")
            del Ws, xfull
            torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------
# Attention
# ----------------------------------------------------------------------------------------


def sdpa_backends():
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except Exception:  # noqa: BLE001
        return []
    out = []
    for name in ["FLASH_ATTENTION", "CUDNN_ATTENTION", "EFFICIENT_ATTENTION"]:
        b = getattr(SDPBackend, name, None)
        if b is not None:
            out.append((name.lower(), b, sdpa_kernel))
    return out


def _sdpa_call(q, k, v, causal, gqa_mode):
    if gqa_mode == "enable_gqa":
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def run_attention(env, rows, quick, warmup, reps):
    H, HKV, D = ATT_HEADS, ATT_KV_HEADS, ATT_HEAD_DIM
    rep = H // HKV
    backends = sdpa_backends()
    seqs = PREFILL_SEQS if not quick else [512, 2048, 8192, 32768]
    # ---- prefill: batch 1, causal ----
    for name, b, sdpa_kernel in backends:
        for S in seqs:
            q = torch.randn(1, H, S, D, device="cuda", dtype=torch.bfloat16)
            k = torch.randn(1, HKV, S, D, device="cuda", dtype=torch.bfloat16)
            v = torch.randn(1, HKV, S, D, device="cuda", dtype=torch.bfloat16)
            # causal: half of the S x S score matrix (plus the diagonal)
            flops = 4.0 * H * D * (S * (S + 1) / 2)
            bytes_moved = (q.numel() * 2 + k.numel() * 2 * 2) + q.numel() * 2
            est = flops / (400.0 * 1e6)
            res = None
            for gqa_mode in ["enable_gqa", "kv_expanded"]:
                kk, vv = (k, v) if gqa_mode == "enable_gqa" else (
                    k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1))
                try:
                    with sdpa_kernel(b):
                        _sdpa_call(q, kk, vv, True, gqa_mode)
                        torch.cuda.synchronize()

                        def fn(i, q=q, kk=kk, vv=vv, gm=gqa_mode):
                            _sdpa_call(q, kk, vv, True, gm)
                        res = timed(fn, est, 1, warmup, reps) + (gqa_mode,)
                    break
                except Exception as e:  # noqa: BLE001
                    err = f"{type(e).__name__}: {str(e).splitlines()[0][:150] if str(e) else ''}"
                    torch.cuda.synchronize()
                    continue
            if res is None:
                log(f"  attn prefill {name} S={S}: unsupported ({err})")
                rows.append(dict(env, op="attn_prefill", backend=name, dtype="bf16", batch=1,
                                 seq=S, heads=H, kv_heads=HKV, head_dim=D,
                                 note=f"UNSUPPORTED {err}"))
                del q, k, v
                continue
            t_us, method, gqa_mode = res
            rows.append(dict(
                env, op="attn_prefill", backend=f"sdpa:{name}", dtype="bf16", batch=1, seq=S,
                context=S, heads=H, kv_heads=HKV, head_dim=D, time_us=f"{t_us:.3f}",
                tflops=f"{flops / t_us / 1e6:.2f}", gb_s=f"{bytes_moved / t_us / 1e3:.1f}",
                bytes_moved=int(bytes_moved), flops=int(flops), method=method,
                note=f"causal; gqa={gqa_mode}; flops=4*H*D*S*(S+1)/2"))
            log(f"  attn prefill {name:20s} S={S:6d} {t_us:10.1f} us "
                f"{flops / t_us / 1e6:7.1f} TFLOP/s  {gqa_mode} {method}")
            del q, k, v
            torch.cuda.empty_cache()
    # ---- decode: q_len 1, full (non-causal) attention over the context ----
    batches = DECODE_BATCHES
    ctxs = DECODE_CONTEXTS
    for name, b, sdpa_kernel in backends:
        for B in batches:
            for C in ctxs:
                kv_bytes = B * HKV * C * D * 2 * 2
                nb = n_bufs_for(kv_bytes)
                flops = 4.0 * B * H * C * D
                bytes_moved = kv_bytes + 2 * B * H * D * 2
                est = bytes_moved / (EST_GBS * 1e3)
                if est >= LOOP_THRESHOLD_US:
                    nb = 1
                try:
                    q = torch.randn(B, H, 1, D, device="cuda", dtype=torch.bfloat16)
                    ks = [torch.randn(B, HKV, C, D, device="cuda", dtype=torch.bfloat16)
                          for _ in range(nb)]
                    vs = [torch.randn(B, HKV, C, D, device="cuda", dtype=torch.bfloat16)
                          for _ in range(nb)]
                except torch.cuda.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    continue
                res = None
                err = ""
                for gqa_mode in ["enable_gqa", "kv_expanded"]:
                    if gqa_mode == "kv_expanded" and kv_bytes * rep > (8 << 30):
                        break
                    if gqa_mode == "enable_gqa":
                        kk_l, vv_l = ks, vs
                    else:
                        kk_l = [x.repeat_interleave(rep, dim=1) for x in ks]
                        vv_l = [x.repeat_interleave(rep, dim=1) for x in vs]
                    try:
                        with sdpa_kernel(b):
                            _sdpa_call(q, kk_l[0], vv_l[0], False, gqa_mode)
                            torch.cuda.synchronize()

                            def fn(i, kk_l=kk_l, vv_l=vv_l, gm=gqa_mode):
                                _sdpa_call(q, kk_l[i % nb], vv_l[i % nb], False, gm)
                            # bytes per buffer set = kv_bytes; nb already chosen from it
                            if est >= LOOP_THRESHOLD_US:
                                r = time_per_call(fn, warmup, reps)
                            else:
                                n_launch = int(max(nb, min(512, math.ceil(
                                    GRAPH_TARGET_US / max(est, 1.0)))))
                                n_launch = int(math.ceil(n_launch / nb) * nb)
                                r = time_loop(fn, n_launch, nb, warmup, reps)
                            res = r + (gqa_mode,)
                        break
                    except Exception as e:  # noqa: BLE001
                        err = f"{type(e).__name__}: {str(e).splitlines()[0][:150] if str(e) else ''}"
                        torch.cuda.synchronize()
                        continue
                    finally:
                        if gqa_mode == "kv_expanded":
                            del kk_l, vv_l
                if res is None:
                    log(f"  attn decode {name} B={B} C={C}: unsupported ({err})")
                    rows.append(dict(env, op="attn_decode", backend=f"sdpa:{name}", dtype="bf16",
                                     batch=B, seq=1, context=C, heads=H, kv_heads=HKV,
                                     head_dim=D, note=f"UNSUPPORTED {err}"))
                else:
                    t_us, method, gqa_mode = res
                    note = f"q_len=1, not causal; gqa={gqa_mode}; bytes=K+V cache read (GQA size)"
                    rows.append(dict(
                        env, op="attn_decode", backend=f"sdpa:{name}", dtype="bf16", batch=B,
                        seq=1, context=C, heads=H, kv_heads=HKV, head_dim=D,
                        time_us=f"{t_us:.3f}", tflops=f"{flops / t_us / 1e6:.3f}",
                        gb_s=f"{bytes_moved / t_us / 1e3:.1f}", bytes_moved=int(bytes_moved),
                        flops=int(flops), method=method, note=note))
                    log(f"  attn decode {name:20s} B={B:4d} C={C:6d} {t_us:10.2f} us "
                        f"{bytes_moved / t_us / 1e3:8.1f} GB/s  {gqa_mode} {method}")
                del q, ks, vs
                torch.cuda.empty_cache()


def run_copy(env, rows, warmup, reps):
    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device="cuda").random_(0, 255)
    b = torch.empty_like(a)

    def fn(i):
        b.copy_(a)
    t_us, method = time_per_call(fn, warmup, reps)
    rows.append(dict(env, op="copy_d2d", dtype="uint8", bytes_moved=2 * n, time_us=f"{t_us:.3f}",
                     gb_s=f"{2 * n / t_us / 1e3:.1f}", method=method,
                     note="1 GiB tensor.copy_; gb_s counts read + write"))
    log(f"  copy d2d 1 GiB: {t_us:.1f} us, {2 * n / t_us / 1e3:.1f} GB/s (read+write)")
    del a, b
    torch.cuda.empty_cache()


def write_csv(path, fields, rows, append=False):
    exists = os.path.exists(path) and os.path.getsize(path) > 0
    with open(path, "a" if append else "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if not (append and exists):
            w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in fields})


def single_gpu(args):
    torch.cuda.set_device(0)
    env = env_info()
    log(f"env: {env}")
    props = torch.cuda.get_device_properties(0)
    log(f"  SMs {props.multi_processor_count}, mem {props.total_memory / 2**30:.1f} GiB")
    warmup, reps = (3, 20) if args.quick else (5, 30)
    rows = []
    path = os.path.join(args.out, "kernels.csv")
    t0 = time.time()
    parts = args.parts.split(",")
    if "copy" in parts:
        try:
            run_copy(env, rows, warmup, reps)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
    if "gemm" in parts:
        fp8_ok, fp8_note = fp8_available()
        try:
            run_gemms(env, rows, args.quick, warmup, reps, fp8_ok, fp8_note)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
        write_csv(path, KERNEL_FIELDS, rows)
        log(f"gemm done at {time.time() - t0:.1f} s")
    if "attn" in parts:
        try:
            run_attention(env, rows, args.quick, warmup, reps)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
    write_csv(path, KERNEL_FIELDS, rows)
    log(f"wrote {len(rows)} rows to {path} in {time.time() - t0:.1f} s")


# ----------------------------------------------------------------------------------------
# Collectives
# ----------------------------------------------------------------------------------------


def collectives(args):
    import torch.distributed as dist
    local = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local)
    dist.init_process_group("nccl", device_id=torch.device("cuda", local))
    rank, world = dist.get_rank(), dist.get_world_size()
    env = env_info()
    reps = 20 if args.quick else 30
    rows = []
    t0 = time.time()
    # correctness check
    x = torch.full((1024,), float(rank + 1), device="cuda", dtype=torch.bfloat16)
    dist.all_reduce(x)
    expect = world * (world + 1) / 2
    ok = bool((x.float() == expect).all().item())
    if rank == 0:
        log(f"  world {world}: all_reduce check {'ok' if ok else 'WRONG'} ({x[0].item()} vs {expect})")
    # all_to_all_single check: rank r sends chunk j (value 16*r + j) to rank j, so rank r
    # receives chunk s = 16*s + r from each source rank s (exact in bf16 for world <= 8).
    chunk = 256
    a2a_in = torch.cat([torch.full((chunk,), float(16 * rank + j), device="cuda",
                                   dtype=torch.bfloat16) for j in range(world)])
    a2a_out = torch.empty_like(a2a_in)
    dist.all_to_all_single(a2a_out, a2a_in)
    a2a_exp = torch.cat([torch.full((chunk,), float(16 * s + rank), device="cuda",
                                    dtype=torch.bfloat16) for s in range(world)])
    ok = torch.tensor([int(torch.equal(a2a_out, a2a_exp))], device="cuda")
    dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    if rank == 0:
        log(f"  world {world}: all_to_all_single check {'ok' if ok.item() else 'WRONG'} "
            f"(rank 0 got {a2a_out[::chunk].tolist()})")
    del a2a_in, a2a_out, a2a_exp
    ops = ["all_reduce", "all_gather_into_tensor", "reduce_scatter_tensor", "all_to_all_single"]
    graph_ok = not args.no_coll_graph
    for op in ops:
        for size in COLL_SIZES:
            n_el = size // 2
            n_el -= n_el % world
            try:
                if op == "all_reduce":
                    buf = torch.randn(n_el, device="cuda", dtype=torch.bfloat16)

                    def fn():
                        dist.all_reduce(buf)
                    per_rank = n_el * 2
                    bus = 2.0 * (world - 1) / world
                elif op == "all_to_all_single":
                    # Each rank's input holds n_el elements, n_el/world for each destination
                    # rank (its own chunk included); bytes = the per-rank input, as nccl-tests
                    # reports alltoall.
                    inp = torch.randn(n_el, device="cuda", dtype=torch.bfloat16)
                    outp = torch.empty(n_el, device="cuda", dtype=torch.bfloat16)

                    def fn():
                        dist.all_to_all_single(outp, inp)
                    per_rank = n_el * 2
                    bus = (world - 1) / world
                elif op == "all_gather_into_tensor":
                    inp = torch.randn(n_el // world, device="cuda", dtype=torch.bfloat16)
                    outp = torch.empty(n_el, device="cuda", dtype=torch.bfloat16)

                    def fn():
                        dist.all_gather_into_tensor(outp, inp)
                    per_rank = (n_el // world) * 2
                    bus = (world - 1) / world
                else:
                    inp = torch.randn(n_el, device="cuda", dtype=torch.bfloat16)
                    outp = torch.empty(n_el // world, device="cuda", dtype=torch.bfloat16)

                    def fn():
                        dist.reduce_scatter_tensor(outp, inp)
                    per_rank = n_el * 2
                    bus = (world - 1) / world
            except torch.cuda.OutOfMemoryError:
                continue
            L = 50 if size <= (1 << 20) else (20 if size <= (32 << 20) else 5)
            for _ in range(5):
                fn()
            torch.cuda.synchronize()
            dist.barrier()
            pairs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                     for _ in range(reps)]
            for st, en in pairs:
                st.record()
                for _ in range(L):
                    fn()
                en.record()
            t_us = _median_events(pairs) / L
            tt = torch.tensor([t_us], device="cuda", dtype=torch.float64)
            dist.all_reduce(tt, op=dist.ReduceOp.MAX)
            t_max = tt.item()
            total = n_el * 2
            algbw = total / t_max / 1e3
            if rank == 0:
                rows.append(dict(
                    env, op=op, dtype="bf16", n_ranks=world, bytes=total, bytes_per_rank=per_rank,
                    time_us=f"{t_max:.3f}", time_us_rank0=f"{t_us:.3f}",
                    algbw_gb_s=f"{algbw:.2f}", busbw_gb_s=f"{algbw * bus:.2f}",
                    method=f"eager_loop(L={L}), median of {reps}, max over ranks",
                    note="bytes = full tensor (all_reduce: per-rank buffer; all_gather: output; "
                         "reduce_scatter: input; all_to_all: per-rank input), as nccl-tests 'size'"))
                log(f"  {op:24s} n={world} {total:>11d} B {t_max:10.2f} us "
                    f"algbw {algbw:8.2f} GB/s busbw {algbw * bus:8.2f} GB/s")
            if graph_ok and size <= GRAPH_COLL_MAX:
                # The same L collectives captured in one CUDA graph (as in SGLang's decode
                # graphs): removes the host launch overhead of each eager call.
                try:
                    s = torch.cuda.Stream()
                    s.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(s):
                        for _ in range(3):
                            fn()
                    torch.cuda.current_stream().wait_stream(s)
                    torch.cuda.synchronize()
                    g = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(g):
                        for _ in range(L):
                            fn()
                    for _ in range(3):
                        g.replay()
                    torch.cuda.synchronize()
                    dist.barrier()
                    pairs = [(torch.cuda.Event(enable_timing=True),
                              torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
                    for st, en in pairs:
                        st.record()
                        g.replay()
                        en.record()
                    tg = _median_events(pairs) / L
                    del g
                except Exception as e:  # noqa: BLE001
                    log(f"  rank {rank}: graph capture of {op} failed ({type(e).__name__}: "
                        f"{str(e)[:150]}); graph mode off")
                    graph_ok = False
                    tg = -1.0
                tt = torch.tensor([tg], device="cuda", dtype=torch.float64)
                dist.all_reduce(tt, op=dist.ReduceOp.MAX)
                tgm = tt.item()
                if rank == 0 and tgm > 0:
                    algbw = total / tgm / 1e3
                    rows.append(dict(
                        env, op=op, dtype="bf16", n_ranks=world, bytes=total,
                        bytes_per_rank=per_rank, time_us=f"{tgm:.3f}", time_us_rank0=f"{tg:.3f}",
                        algbw_gb_s=f"{algbw:.2f}", busbw_gb_s=f"{algbw * bus:.2f}",
                        method=f"cuda_graph_loop(L={L}), median of {reps} replays, max over ranks",
                        note="bytes as above; NCCL captured in a CUDA graph"))
                    log(f"  {op:24s} n={world} {total:>11d} B {tgm:10.2f} us "
                        f"algbw {algbw:8.2f} GB/s busbw {algbw * bus:8.2f} GB/s  [graph]")
            del fn
            torch.cuda.empty_cache()
    if rank == 0:
        path = os.path.join(args.out, "collectives.csv")
        write_csv(path, COLL_FIELDS, rows, append=True)
        log(f"wrote {len(rows)} rows to {path} in {time.time() - t0:.1f} s")
    dist.barrier()
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    ap.add_argument("--collectives", action="store_true", help="NCCL collectives (under torchrun)")
    ap.add_argument("--no-coll-graph", action="store_true",
                    help="skip the CUDA-graph timing of collectives")
    ap.add_argument("--parts", default="copy,gemm,attn", help="single-GPU parts to run")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if not torch.cuda.is_available():
        sys.exit("CUDA is not available")
    if args.collectives:
        collectives(args)
    else:
        single_gpu(args)


if __name__ == "__main__":
    main()
