#!/usr/bin/env python3
# CPU cost of launching kernels from eager PyTorch on a GPU host (no SGLang there); see data/measured/README.md.
# 1. Per-call CPU time of single ops enqueued back to back on small tensors (the GPU never holds the CPU back):
#    aten element-wise, allocation, cuBLAS mm, nn.Linear (module call), FP8 scaled mm, rms_norm, SDPA, a Triton kernel.
# 2. Eager prefill of Hugging Face transformers stacks shaped like Llama-3.1-8B and Qwen3-32B (8 layers, random
#    BF16 weights) at 16 and 100 tokens, with the CUDA kernels of one pass counted by torch.profiler.
# Prints JSON lines. Kept compact: the lent machine's command line carries it inline (gzip + base64).
import json,time,torch,triton,triton.language as tl
from transformers import AutoConfig as AC,AutoModelForCausalLM as AM
@triton.jit
def K(x,y,o,n,B:tl.constexpr):
 f=tl.program_id(0)*B+tl.arange(0,B);m=f<n;tl.store(o+f,tl.load(x+f,mask=m)+tl.load(y+f,mask=m),mask=m)
def pc(fn,c=3000):
 for _ in range(200):fn()
 torch.cuda.synchronize();t=time.perf_counter()
 for _ in range(c):fn()
 s=time.perf_counter()-t;torch.cuda.synchronize();return round(s/c*1e6,2)
d="cuda";b=torch.bfloat16;x=torch.randn(100,5120,device=d,dtype=b);w=torch.randn(5120,1024,device=d,dtype=b);y=torch.empty_like(x)
L=torch.nn.Linear(5120,1024,bias=False,device=d,dtype=b);a8=torch.randn(128,5120,device=d).to(torch.float8_e4m3fn);b8=torch.randn(1024,5120,device=d).to(torch.float8_e4m3fn).t();one=torch.ones((),device=d);q=torch.randn(1,64,100,128,device=d,dtype=b);n=x.numel()
F=torch.nn.functional
for k,f in dict(add=lambda:x.add_(1.0),empty=lambda:torch.empty(100,5120,device=d,dtype=b),mm=lambda:torch.mm(x,w),linear=lambda:L(x),scaled_mm=lambda:torch._scaled_mm(a8,b8,scale_a=one,scale_b=one,out_dtype=b),rms_norm=lambda:F.rms_norm(x,(5120,)),sdpa=lambda:F.scaled_dot_product_attention(q,q,q,is_causal=True),triton=lambda:K[(triton.cdiv(n,1024),)](x,x,y,n,B=1024)).items():print(json.dumps({"op":k,"us":pc(f)}),flush=True)
S={"llama8b":dict(model_type="llama",hidden_size=4096,intermediate_size=14336,num_attention_heads=32,num_key_value_heads=8,vocab_size=128256),"qwen3_32b":dict(model_type="qwen3",hidden_size=5120,intermediate_size=25600,num_attention_heads=64,num_key_value_heads=8,head_dim=128,vocab_size=151936)}
for nm,kw in S.items():
 mt=kw.pop("model_type");c=AC.for_model(mt,num_hidden_layers=8,**kw);c._attn_implementation="sdpa"
 with torch.device(d):M=AM.from_config(c,torch_dtype=b)
 M.eval()
 for isl in(16,100):
  i=torch.randint(0,c.vocab_size,(1,isl),device=d)
  with torch.inference_mode():
   for _ in range(3):M(i,use_cache=False,logits_to_keep=1)
   torch.cuda.synchronize();T=[]
   for _ in range(10):
    t=time.perf_counter();M(i,use_cache=False,logits_to_keep=1);torch.cuda.synchronize();T.append((time.perf_counter()-t)*1e3)
   with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as P:
    M(i,use_cache=False,logits_to_keep=1);torch.cuda.synchronize()
  k=sum(1 for e in P.events() if e.device_type==torch.autograd.DeviceType.CUDA);T.sort()
  print(json.dumps({"m":nm,"layers":8,"isl":isl,"ms":round(T[5],3),"kernels":k,"us_per_kernel":round(T[5]*1e3/k,2)}),flush=True)
 del M;torch.cuda.empty_cache()
print(torch.__version__,triton.__version__,open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0])
