"""The Python package against the CLI: same answers, same errors (issue 15)."""

import json
import os
import subprocess

import pytest

import sglsim

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("SGLSIM_BIN", os.path.join(ROOT, "target", "debug", "sglsim"))


def cli_json(*args):
    out = subprocess.run([BINARY, *args, "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_predict_equals_the_cli_to_the_last_digit():
    kwargs = dict(model="meta-llama/Llama-3.1-8B-Instruct", gpu="h100", tp=1, isl=1024, osl=128,
                  concurrency=8, num_requests=64)
    expected = cli_json("predict", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "h100",
                        "--tp", "1", "--isl", "1024", "--osl", "128", "--concurrency", "8",
                        "--num-requests", "64")
    assert sglsim.predict(**kwargs) == expected


def test_disaggregated_predict_takes_the_role_flags():
    got = sglsim.predict(model="Qwen3-8B", gpu="h100", mode="disagg", prefill_tp=1, decode_tp=2,
                         isl=512, osl=64, concurrency=4)
    assert got["mode"] == "disagg" and got["n_gpus"] == 3
    assert [e["role"] for e in got["engines"]] == ["prefill", "decode"]


def test_search_returns_recommendations():
    result = sglsim.search(model="Qwen/Qwen3-32B", gpu=["h200"], total_gpus=8, isl=4000, osl=500,
                           ttft=300, itl=10)
    assert result["top"], result
    assert all(row["predict_command"].startswith("sglsim predict ") for row in result["top"])


def test_unknown_model_raises_value_error_naming_it():
    with pytest.raises(ValueError, match="no-such-model"):
        sglsim.predict(model="no-such-model", gpu="h100", isl=10, osl=10)


def test_bad_values_and_unknown_arguments_raise_value_error():
    with pytest.raises(ValueError, match="--concurrency 0"):
        sglsim.predict(model="Qwen3-8B", gpu="h100", isl=10, osl=10, concurrency=0)
    with pytest.raises(ValueError, match="unknown argument 'concurency'"):
        sglsim.predict(model="Qwen3-8B", gpu="h100", isl=10, osl=10, concurency=4)
