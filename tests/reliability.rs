//! Issue 13: every bad or extreme input ends within seconds in a clear error (exit 2) naming the
//! input, or in a physically possible answer; one regression test per defect the issue lists.

use std::path::Path;

use crate::util::{sglsim, sglsim_args, temp_dir, Output};

const LLAMA: &str = "predict --model Llama-3.1-8B-Instruct --gpu h100";

/// Asserts a refusal: exit code 2 and every needle in stderr.
fn refused(out: &Output, needles: &[&str]) {
    assert_eq!(out.code, 2, "stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    for needle in needles {
        assert!(out.stderr.contains(needle), "missing {needle:?} in:\n{}", out.stderr);
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn request_counts_that_would_exhaust_memory_are_refused_up_front() {
    refused(
        &sglsim(&format!("{LLAMA} --isl 100 --osl 10 --concurrency 100000000")),
        &["--concurrency 100000000", "at most 10000000 clients"],
    );
    refused(
        &sglsim(&format!("{LLAMA} --isl 100 --osl 10 --concurrency 4 --num-requests 10000000000")),
        &["--num-requests 10000000000", "at most 10000000 requests"],
    );
    refused(
        &sglsim(&format!("{LLAMA} --isl 100 --osl 10 --batch 100000000")),
        &["--batch 100000000", "at most 10000000 requests"],
    );
    refused(
        &sglsim("search --model Qwen3-8B --gpu h100 --total-gpus 1 --isl 100 --osl 10 --ttft 100 --itl 10 --concurrency 100000000"),
        &["--concurrency", "100000000", "at most 100000 clients"],
    );
    // The load generator refuses before it connects (nothing listens on port 9).
    refused(
        &sglsim("bench --url http://127.0.0.1:9 --isl 1000000000000 --osl 10 --concurrency 1"),
        &["--isl 1000000000000", "at most 10000000 tokens"],
    );
}

#[test]
fn a_validate_row_with_a_huge_concurrency_is_reported_not_run() {
    let dir = temp_dir();
    let data = write(
        dir.path(),
        "rows.csv",
        "model,gpu,tp,dp,ep,dtype,mode,isl,osl,concurrency,request_rate,batch,metric,value,unit\n\
         Qwen/Qwen3-8B,h100,1,1,1,bf16,agg,1000,100,100000000,,,median_tpot,9,ms\n\
         Qwen/Qwen3-8B,h100,1,1,1,bf16,agg,1000,100,,,4,median_tpot,9,ms\n",
    );
    let out = sglsim_args(&["validate", "--data", &data, "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = out.stdout + &out.stderr;
    assert!(text.contains("concurrency 100000000: at most 10000000 clients"), "{text}");
}

#[test]
fn lengths_that_would_wrap_or_exceed_the_context_are_refused() {
    // Llama-3.1-8B's window is 131072 tokens; u64::MAX - 9 + 10 used to wrap to 0 in the KV check.
    refused(
        &sglsim(&format!("{LLAMA} --isl 18446744073709551606 --osl 10")),
        &[
            "The input (18446744073709551606 tokens) is longer than the model's context length (131072 tokens).",
            "--context-length",
        ],
    );
    refused(
        &sglsim(&format!("{LLAMA} --isl 131000 --osl 100")),
        &["Requested token count exceeds the model's maximum context length of 131072 tokens"],
    );
    // SGLang's --context-length raises the window; a request within it then runs.
    let raised = sglsim(&format!("{LLAMA} --isl 131000 --osl 100 --context-length 140000 --json"));
    assert_eq!(raised.code, 0, "{}", raised.stderr);
    refused(
        &sglsim(&format!("{LLAMA} --isl 100 --osl 10 --context-length 0")),
        &["--context-length 0"],
    );
    refused(
        &sglsim("search --model Qwen3-8B --gpu h100 --total-gpus 1 --isl 18446744073709551606 --osl 10 --ttft 100 --itl 10"),
        &["--isl/--osl", "longer than the model's context length (40960 tokens)"],
    );
    // Used to run 34 s and print "no feasible configuration" with no reason.
    refused(
        &sglsim("search --model Qwen3-8B --gpu h100 --total-gpus 1 --isl 1000 --osl 100000000 --ttft 100 --itl 10"),
        &["Requested token count exceeds the model's maximum context length of 40960 tokens"],
    );
    refused(
        &sglsim(&format!("{LLAMA} --isl 100 --osl 10 --warmup-requests 18446744073709551615")),
        &["--warmup-requests 18446744073709551615"],
    );
}

#[test]
fn profile_checks_its_lengths_before_writing() {
    let dir = temp_dir();
    let out_dir = dir.path().join("profile");
    let out_text = out_dir.to_str().unwrap();
    for (isl, needle) in [("1000000000000", "longer than the model's context length"), ("0", "--isl 0")] {
        let out = sglsim_args(&[
            "profile", "--model", "Qwen3-8B", "--gpu", "h100", "--isl", isl, "--osl", "10", "--out", out_text,
        ]);
        refused(&out, &[needle]);
        assert!(!out_dir.exists(), "--isl {isl} wrote {}", out_dir.display());
    }
}

#[test]
fn traces_with_impossible_rows_are_refused_and_spreadsheet_csv_is_read() {
    let dir = temp_dir();
    let huge_isl = write(dir.path(), "huge.csv", "arrival_s,isl,osl\n0,1e30,10\n");
    refused(
        &sglsim(&format!("{LLAMA} --trace {huge_isl}")),
        &["row 1", "isl = 1000000000000000000000000000000", "whole number of tokens"],
    );
    let late = write(dir.path(), "late.csv", "arrival_s,isl,osl\n0,100,10\n1e300,100,10\n");
    refused(&sglsim(&format!("{LLAMA} --trace {late}")), &["request 2", "1e300 s", "31.7 years"]);
    let fraction = write(dir.path(), "fraction.jsonl", "{\"arrival_s\":0,\"isl\":12.5,\"osl\":4}\n");
    refused(&sglsim(&format!("{LLAMA} --trace {fraction}")), &["isl = 12.5"]);
    // A byte-order mark and quoted header fields, as spreadsheets export them.
    let spreadsheet = write(
        dir.path(),
        "excel.csv",
        "\u{feff}\"arrival_s\",\"isl\",\"osl\"\r\n0,\"100\",10\r\n0.5,200,20\r\n",
    );
    let out = sglsim(&format!("{LLAMA} --trace {spreadsheet} --json"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["n_requests"], 2);
    let unnamed = write(dir.path(), "unnamed.csv", "time,in,out\n0,100,10\n");
    refused(
        &sglsim(&format!("{LLAMA} --trace {unnamed}")),
        &["needs arrival_s", "its columns are: in, out, time"],
    );
}

#[test]
fn request_rates_too_low_to_simulate_are_refused() {
    // 1e-10 requests/s used to report TTFT 0.0 ms, 1e-20 a throughput of 131.6 requests/s.
    for rate in ["1e-10", "1e-20"] {
        refused(
            &sglsim(&format!("{LLAMA} --isl 100 --osl 10 --request-rate {rate}")),
            &[&format!("--request-rate {rate}"), "31.7 years", "requests/s or fewer requests"],
        );
    }
    // One request arrives at t = 0 whatever the rate: a possible answer.
    let one = sglsim(&format!("{LLAMA} --isl 100 --osl 10 --request-rate 1e-20 --num-requests 1 --json"));
    assert_eq!(one.code, 0, "{}", one.stderr);
    assert!(one.json()["ttft_ms"]["p50"].as_f64().unwrap() > 1.0);
}

#[test]
fn kernel_rows_that_take_no_time_are_refused() {
    let dir = temp_dir();
    for time in ["0", "-5"] {
        let csv = write(
            dir.path(),
            "h100_kernels.csv",
            &format!("op,dtype,backend,m,n,k,time_us\ngemm,bf16,,128,4096,4096,{time}\n"),
        );
        refused(
            &sglsim_args(&["kernels", "--gpu", "h100", "--kernels", &csv]),
            &["data row 1", &format!("time_us = {time}"), "positive"],
        );
    }
    // A GEMM of -5 (read as 0) rows printed -100%, one of 1e30 rows an error of 2e17 %.
    for m in ["-5", "1e30", "12.5"] {
        let csv = write(
            dir.path(),
            "h100_kernels.csv",
            &format!("op,dtype,backend,m,n,k,time_us\ngemm,bf16,,{m},4096,4096,50\n"),
        );
        refused(
            &sglsim_args(&["kernels", "--gpu", "h100", "--kernels", &csv]),
            &["data row 1", &format!("m = {}", m.parse::<f64>().unwrap()), "whole number from 1"],
        );
    }
}

#[test]
fn flags_that_would_be_ignored_are_refused() {
    let dir = temp_dir();
    let trace = write(dir.path(), "t.csv", "arrival_s,isl,osl\n0,100,10\n");
    for flag in ["--concurrency 4", "--request-rate 2", "--batch 8", "--isl 100", "--num-requests 5"] {
        let out = sglsim(&format!("{LLAMA} --trace {trace} {flag}"));
        refused(&out, &["cannot be used with"]);
    }
    refused(
        &sglsim(&format!("{LLAMA} --isl 100 --osl 10 --prefill-tp 2")),
        &["--prefill-tp", "--mode disagg"],
    );
    refused(
        &sglsim(&format!("{LLAMA} --isl 100 --osl 10 --mode disagg --replicas 2")),
        &["--replicas 2", "--prefill-workers"],
    );
    for value in ["NaN", "-1", "0"] {
        refused(
            &sglsim_args(&[
                "predict",
                "--model",
                "Llama-3.1-8B-Instruct",
                "--gpu",
                "h100",
                "--isl",
                "100",
                "--osl",
                "10",
                "--ttft",
                value,
            ]),
            &[&format!("--ttft {value}"), "positive"],
        );
    }
    refused(
        &sglsim(&format!("{LLAMA} --isl 100 --osl 10 --sglang-version 99.0")),
        &["--sglang-version '99.0'", "0.3.0 to 0.5.8"],
    );
    refused(
        &sglsim(&format!("{LLAMA} --isl 100 --osl 10 --batch 4 --num-requests 9")),
        &["--num-requests applies to --concurrency or --request-rate"],
    );
}

#[test]
fn messages_name_the_input_at_fault() {
    refused(
        &sglsim(&format!("{LLAMA} --isl 100 --osl 10 --concurrency 0")),
        &["--concurrency 0"],
    );
    let page = sglsim(&format!("{LLAMA} --isl 100 --osl 10 --page-size 1000000"));
    assert_eq!(page.code, 2, "{}", page.stderr);
    assert!(
        page.stdout.contains("--page-size 1000000 is larger than the whole KV pool") && !page.stdout.contains("weights need"),
        "{}",
        page.stdout
    );
}

/// A small, fast search: Qwen3-8B on one H100, a few simulations.
fn small_search(dir: &Path, ttft_ms: &str, itl_ms: &str) -> Output {
    sglsim_args(&[
        "search",
        "--model",
        "Qwen3-8B",
        "--gpu",
        "h100",
        "--total-gpus",
        "1",
        "--mode",
        "agg",
        "--isl",
        "1000",
        "--osl",
        "100",
        "--ttft",
        ttft_ms,
        "--itl",
        itl_ms,
        "--max-simulations",
        "4",
        "--out",
        dir.to_str().unwrap(),
    ])
}

#[test]
fn a_failed_search_never_replaces_a_good_selection() {
    let dir = temp_dir();
    let good = small_search(dir.path(), "60000", "1000");
    assert_eq!(good.code, 0, "{}", good.stderr);
    let selected = dir.path().join("selected_config.txt");
    let before = std::fs::read_to_string(&selected).unwrap();
    assert!(before.contains("sglang.launch_server"), "{before}");

    let failed = small_search(dir.path(), "0.001", "0.001");
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert_eq!(
        std::fs::read_to_string(&selected).unwrap(),
        before,
        "the good selection was replaced"
    );
    assert!(failed.stderr.contains("selected_config.txt was not written"), "{}", failed.stderr);
    let nearest = std::fs::read_to_string(dir.path().join("nearest_config.txt")).unwrap();
    assert!(nearest.starts_with("# NO CONFIGURATION MEETS THE SLA"), "{nearest}");
    let results: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap()).unwrap();
    assert_eq!(results["feasible"], 0);
    // No temporary file is left behind.
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A later good run takes the folder back, and the stale nearest configuration goes.
    assert_eq!(small_search(dir.path(), "60000", "1000").code, 0);
    assert!(!dir.path().join("nearest_config.txt").exists());
}

/// Sends one raw HTTP/1.1 request (closing the connection after it) and returns the status and body.
fn post(address: std::net::SocketAddr, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: twin\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

#[test]
fn serve_answers_sglangs_400_for_requests_it_cannot_take() {
    let twin = crate::util::qwen3_8b_twin(sglsim::model::coefficients::Coefficients::defaults(), 50.0);
    let address = twin.local_addr();
    // Qwen3-8B's window is 40,960 tokens: a 50,000-token prompt is refused with SGLang's message.
    let ids = vec!["1"; 50_000].join(",");
    let (status, body) = post(address, "/v1/completions", &format!(r#"{{"prompt":[{ids}],"max_tokens":4}}"#));
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("The input (50000 tokens) is longer than the model's context length (40960 tokens).")
            && body.contains("\"code\":400"),
        "{body}"
    );
    let (status, body) = post(address, "/v1/completions", r#"{"prompt":[1,2,3],"max_tokens":1000000000000}"#);
    assert!(
        status == 400 && body.contains("Requested token count exceeds the model's maximum context length of 40960 tokens"),
        "{status} {body}"
    );
    let (status, body) = post(
        address,
        "/v1/chat/completions",
        r#"{"messages":[{"role":"user","content":"hi"}],"n":5}"#,
    );
    assert!(status == 400 && body.contains("n = 5 is not supported"), "{status} {body}");
    let (status, body) = post(address, "/v1/completions", r#"{"prompt":[1,2,3],"max_tokens":2}"#);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn serve_drops_connections_that_never_finish_their_headers() {
    use std::io::{Read, Write};
    let twin = crate::util::qwen3_8b_twin(sglsim::model::coefficients::Coefficients::defaults(), 50.0);
    let address = twin.local_addr();
    let mut half_open: Vec<std::net::TcpStream> = (0..20)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(address).unwrap();
            stream.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: twin\r\n").unwrap();
            stream
        })
        .collect();
    // Health checks are answered while the half-sent requests wait.
    let mut health = std::net::TcpStream::connect(address).unwrap();
    health.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    health
        .write_all(b"GET /health HTTP/1.1\r\nHost: twin\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    health.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Each half-open connection is closed by the server after its header-read timeout (5 s);
    // the generous read timeout only stops a broken server from hanging the test.
    for stream in &mut half_open {
        stream.set_read_timeout(Some(std::time::Duration::from_secs(120))).unwrap();
        let mut rest = Vec::new();
        let closed = match stream.read_to_end(&mut rest) {
            Ok(_) => true,
            Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
        };
        assert!(closed, "a half-open connection was kept");
    }
}

#[test]
fn engine_sizes_that_would_allocate_or_loop_without_bound_are_refused() {
    // --cuda-graph-max-bs u64::MAX used to abort allocating 4.6e18 bytes of capture sizes;
    // --tp 4e9 spent 20 s listing the --dp values that would divide the heads.
    refused(
        &sglsim(&format!("{LLAMA} --isl 100 --osl 10 --cuda-graph-max-bs 18446744073709551615")),
        &["--cuda-graph-max-bs 18446744073709551615", "at most 16384"],
    );
    refused(
        &sglsim(&format!("{LLAMA} --isl 100 --osl 10 --tp 4000000000")),
        &["--tp 4000000000", "at most 1024"],
    );
    refused(
        &sglsim(&format!("{LLAMA} --isl 100 --osl 10 --replicas 4000000000")),
        &["--replicas 4000000000", "between 1 and 10000 engines"],
    );
}

#[test]
fn search_threads_are_bounded() {
    // --threads 1e8 used to spawn threads until the run was killed.
    refused(
        &sglsim("search --model Qwen3-8B --gpu h100 --total-gpus 8 --isl 1000 --osl 100 --ttft 1000 --itl 50 --threads 100000000"),
        &["--threads", "100000000", "between 1 and 1024"],
    );
}

#[test]
fn search_length_spreads_must_be_finite() {
    refused(
        &sglsim("search --model Qwen3-8B --gpu h100 --total-gpus 8 --isl 1000 --osl 100 --ttft 1000 --itl 50 --isl-std NaN"),
        &["--isl-std", "NaN", "finite standard deviation"],
    );
}

#[test]
fn a_search_whose_load_saturates_everything_says_so() {
    // Used to print "no feasible configuration" with no reason and an empty table.
    let out = sglsim("search --model Qwen3-8B --gpu h100 --total-gpus 1 --isl 1000 --osl 39000 --request-rate 1000 --ttft 1000 --itl 50");
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stdout.contains("configurations screened serves 1000 requests/s") && out.stdout.contains("lower --request-rate"),
        "{}",
        out.stdout
    );
}
