//! The `sglsim` Python module: `predict(**flags)` and `search(**flags)` over the Rust library.
//!
//! Keyword arguments are the CLI's flags with underscores for dashes. They travel to the library as
//! one JSON object (`PredictRequest::from_json`, `SearchRequest::from_json`), so Python and the CLI
//! share every default and every check; the answer comes back as the CLI's `--json` text, parsed
//! with Python's `json`, so the dict equals `sglsim predict … --json` to the last digit. Bad input
//! raises `ValueError` with the CLI's message. The simulation runs with the GIL released.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use ::sglsim::api::{PredictRequest, Prediction, SearchRequest};

/// The keyword arguments as a JSON object (Python's `json.dumps`; paths as strings).
fn kwargs_json(py: Python<'_>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<String> {
    let json = py.import("json")?;
    let empty = PyDict::new(py);
    let kwargs = kwargs.unwrap_or(&empty);
    let text: String = json.call_method1("dumps", (kwargs,))?.extract()?;
    Ok(text)
}

/// A JSON text as a Python object (Python's `json.loads`).
fn loads(py: Python<'_>, text: &str) -> PyResult<Py<PyAny>> {
    Ok(py.import("json")?.call_method1("loads", (text,))?.unbind())
}

fn value_error(error: ::sglsim::api::Error) -> PyErr {
    PyValueError::new_err(error.chain())
}

/// Predicts one configuration at one load; returns the dict of `sglsim predict --json`.
///
/// Example: `sglsim.predict(model="meta-llama/Llama-3.1-8B-Instruct", gpu="h100", tp=1, isl=1024,
/// osl=128, concurrency=8, num_requests=64)`. A configuration that does not fit returns the
/// does-not-fit dict (`fits` False, `reason`).
#[pyfunction]
#[pyo3(signature = (**kwargs))]
fn predict(py: Python<'_>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Py<PyAny>> {
    let request = PredictRequest::from_json(&kwargs_json(py, kwargs)?).map_err(value_error)?;
    let text = py
        .detach(|| -> Result<String, ::sglsim::api::Error> {
            Ok(match ::sglsim::predict(&request)? {
                Prediction::Served { report, .. } => serde_json::to_string_pretty(&report)?,
                Prediction::DoesNotFit(report) => serde_json::to_string_pretty(&report)?,
            })
        })
        .map_err(value_error)?;
    loads(py, &text)
}

/// Runs the SLA search; returns the dict of `sglsim search --json` (`gpu` is a list of GPU types).
#[pyfunction]
#[pyo3(signature = (**kwargs))]
fn search(py: Python<'_>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Py<PyAny>> {
    let request = SearchRequest::from_json(&kwargs_json(py, kwargs)?).map_err(value_error)?;
    let text = py
        .detach(|| -> Result<String, ::sglsim::api::Error> {
            let report = ::sglsim::search(&request)?;
            Ok(serde_json::to_string_pretty(&report.to_json()?)?)
        })
        .map_err(value_error)?;
    loads(py, &text)
}

/// sglsim: predict how SGLang serves a model before anyone rents the GPUs.
#[pymodule]
#[pyo3(name = "sglsim")]
fn sglsim_module(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(predict, module)?)?;
    module.add_function(wrap_pyfunction!(search, module)?)?;
    Ok(())
}
