#!/usr/bin/env python3
"""Writes a word-level Hugging Face tokenizer folder that AIPerf can load offline.

`aiperf profile` needs a tokenizer to synthesise prompts and to count streamed output tokens;
`--tokenizer builtin` downloads a file at start-up, so with no network it needs a local folder.
This writes `tokenizer.json` and `tokenizer_config.json` for a tokenizer that splits on whitespace
and maps every word to one token, which is how `sglsim serve` counts text: prompts AIPerf builds
with it have exactly the requested number of words, and each word the twin streams is one token.

The vocabulary is every whitespace-separated word of AIPerf's prompt corpus (found in the
installed `aiperf` package, or given with --corpus), the words the twin streams, and `[UNK]`.
Decoding joins tokens with single spaces, and `clean_up_tokenization_spaces` is off so that no
space before punctuation is removed (which would merge two tokens into one word).

For a real SGLang server, give AIPerf the served model's own tokenizer folder instead.

Usage: python3 tools/make_word_tokenizer.py OUT_DIR [--corpus FILE ...]
Needs the `tokenizers` package (AIPerf depends on it).
"""

import argparse
import importlib.util
import json
import pathlib
import sys

# The words `sglsim serve` streams (src/serve/protocol.rs, TOKEN_WORDS), without their leading space.
TWIN_WORDS = (
    "the of and to in is that for it as with on by at from this be or an are model token time data"
).split()


def aiperf_corpus():
    """The prompt corpus shipped with the installed aiperf package, if any."""
    spec = importlib.util.find_spec("aiperf")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = pathlib.Path(location) / "dataset" / "generator" / "assets" / "shakespeare.txt"
        if path.is_file():
            return path
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=pathlib.Path)
    parser.add_argument("--corpus", type=pathlib.Path, action="append", default=[])
    args = parser.parse_args()
    try:
        from tokenizers import Tokenizer
        from tokenizers.models import WordLevel
        from tokenizers.pre_tokenizers import WhitespaceSplit
    except ImportError:
        sys.exit("the tokenizers package is missing: python3 -m pip install tokenizers")

    corpora = list(args.corpus)
    if not corpora:
        found = aiperf_corpus()
        if found is not None:
            corpora.append(found)
    vocab = {"[UNK]": 0}
    for word in TWIN_WORDS:
        vocab.setdefault(word, len(vocab))
    for path in corpora:
        for word in path.read_text(encoding="utf-8", errors="replace").split():
            vocab.setdefault(word, len(vocab))

    tokenizer = Tokenizer(WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = WhitespaceSplit()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(args.out_dir / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": "[UNK]",
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1_000_000,
    }
    (args.out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"wrote a word-level tokenizer of {len(vocab)} words to {args.out_dir}")


if __name__ == "__main__":
    main()
