//! The error type of the cost model: bad specs, bad mappings, unknown names, configurations that do not fit.

/// Everything that can go wrong while building or costing a model configuration.
///
/// Variants carry the field, value or name involved so that the CLI can say exactly what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A GPU name that is not in the catalog.
    #[error("unknown GPU '{name}'{}", suggest(.suggestions))]
    UnknownGpu {
        /// The name given.
        name: String,
        /// Catalog names close to it.
        suggestions: Vec<String>,
    },
    /// A model id that is not bundled and is not a readable path.
    #[error("unknown model '{name}' (not a bundled model id and not a config.json path){}", suggest(.suggestions))]
    UnknownModel {
        /// The name given.
        name: String,
        /// Bundled ids close to it.
        suggestions: Vec<String>,
    },
    /// A `config.json` (or a data file) that cannot be parsed.
    #[error("cannot parse {path}: {message}")]
    Parse {
        /// Where the text came from.
        path: String,
        /// What the parser said.
        message: String,
    },
    /// A field of a model config or data file that is missing or has a value we cannot use.
    #[error("{path}: field '{field}' {problem}")]
    BadField {
        /// Where the field lives.
        path: String,
        /// The field's name.
        field: String,
        /// What is wrong and what would be accepted.
        problem: String,
    },
    /// A parallel mapping that does not divide the model or is not allowed.
    #[error("invalid mapping {mapping}: {problem}")]
    BadMapping {
        /// The mapping as SGLang flags.
        mapping: String,
        /// Which dimension does not divide and what would.
        problem: String,
    },
    /// A value given on the command line or in a profile that is out of range.
    #[error("invalid {field} = {value}: {expected}")]
    BadValue {
        /// The flag or field name.
        field: String,
        /// The value given.
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// A configuration whose weights (and minimum KV cache) do not fit in GPU memory.
    #[error("does not fit: {reason}")]
    DoesNotFit {
        /// GB needed and available, per GPU.
        reason: String,
    },
}

fn suggest(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!("; did you mean: {}?", suggestions.join(", "))
    }
}

/// The result type of the `model` module.
pub type Result<T> = std::result::Result<T, Error>;

/// Returns up to `limit` candidates closest to `name` (case-insensitive edit distance, substring matches first).
pub fn nearest_names<'a>(name: &str, candidates: impl Iterator<Item = &'a str>, limit: usize) -> Vec<String> {
    let needle = name.to_ascii_lowercase();
    let mut scored: Vec<(usize, String)> = candidates
        .map(|candidate| {
            let lower = candidate.to_ascii_lowercase();
            let distance = if lower.contains(&needle) || (needle.len() >= 3 && needle.contains(&lower)) {
                0
            } else {
                edit_distance(&needle, &lower)
            };
            (distance, candidate.to_string())
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    let cutoff = (needle.len() / 2).max(3);
    scored
        .into_iter()
        .filter(|(d, _)| *d <= cutoff)
        .take(limit)
        .map(|(_, c)| c)
        .collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_names_prefers_close_spellings() {
        let names = ["h100-sxm", "h200", "b200", "a100-80g"];
        let found = nearest_names("h100sxm", names.iter().copied(), 2);
        assert_eq!(found[0], "h100-sxm");
        assert!(nearest_names("zzzzzzzzzzzz", names.iter().copied(), 3).is_empty());
    }
}
