#!/usr/bin/env python3
"""Regenerates the output of every offline `$ sglsim ...` example in README.md.

Runs each command of a fenced block that starts with `$ sglsim` (and a `| jq` pipe after it) with
the release binary, in a scratch folder where `tests/` and `data/` are reachable, and writes its
output below the command. Commands that need a live server (`serve`, `bench`, `calibrate --url`,
`curl`) keep their recorded output. An output shown cut (a line `...` or `…`) keeps the same head
and tail lengths around the marker. Usage: `cargo build --release && python3 tools/regen_readme.py`.
"""

import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "sglsim")
LIVE = ("sglsim serve", "sglsim bench", "curl ")
MARKERS = ("...", "…")


def is_live(command):
    return command.startswith(LIVE) or ("sglsim calibrate" in command and "--url" in command)


def run(command, cwd):
    shell = command.replace("sglsim ", BINARY + " ", 1)
    out = subprocess.run(shell, shell=True, cwd=cwd, capture_output=True, text=True, timeout=600)
    text = out.stdout if out.stdout else out.stderr
    return text.rstrip("\n").split("\n") if text.strip() else []


def fit_to(old, new):
    """Cuts `new` as `old` was cut around its `...` marker."""
    for index, line in enumerate(old):
        if line.strip() in MARKERS:
            tail = len(old) - index - 1
            if len(new) <= index + tail:
                return new
            return new[:index] + [line] + (new[len(new) - tail:] if tail else [])
    return new


def main():
    path = os.path.join(ROOT, "README.md")
    lines = open(path, encoding="utf-8").read().split("\n")
    out, index, in_block, changed = [], 0, False, 0
    with tempfile.TemporaryDirectory() as scratch:
        for name in ("tests", "data"):
            os.symlink(os.path.join(ROOT, name), os.path.join(scratch, name))
        while index < len(lines):
            line = lines[index]
            if line.startswith("```"):
                in_block = not in_block
                out.append(line)
                index += 1
                continue
            if not (in_block and line.startswith("$ ")):
                out.append(line)
                index += 1
                continue
            # A command (with continuation lines), then its recorded output up to the next command or the fence.
            command_lines = [line]
            index += 1
            while command_lines[-1].endswith("\\") and index < len(lines):
                command_lines.append(lines[index])
                index += 1
            old = []
            while index < len(lines) and not lines[index].startswith("$ ") and not lines[index].startswith("```"):
                old.append(lines[index])
                index += 1
            out.extend(command_lines)
            command = " ".join(part.rstrip("\\").strip() for part in command_lines)[2:]
            if is_live(command) or not command.startswith("sglsim "):
                out.extend(old)
                continue
            new = fit_to(old, run(command, scratch))
            changed += new != old
            out.extend(new)
    open(path, "w", encoding="utf-8").write("\n".join(out))
    print(f"README.md: {changed} outputs changed", file=sys.stderr)


if __name__ == "__main__":
    main()
