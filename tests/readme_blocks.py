# SPDX-License-Identifier: BSD-3-Clause
"""The README's example blocks, for tests/test-readme.sh.

Usage: readme_blocks.py README.md > blocks.sh

Every code block of the README must be fenced with an info string (an
indented block, or a fence without one, is an error: the test could not
tell whether it is meant to run).  Blocks fenced ```sh are shell commands
and are written to stdout, in order, each between marker lines; a ```sh
block right after a line

    <!-- test-readme: skip: REASON -->

is not (the reason is printed on stderr).  Other info strings (```text)
are not commands.  Exit status 1 on an error.
"""

import re
import sys

SKIP = re.compile(r"^<!-- test-readme: skip: (.+\S) -->$")


def main(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    errors, out = [], []
    ran = skipped = 0
    i, prev = 0, ""
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            info = line[3:].strip()
            start = i + 1
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                i += 1
            if i == len(lines):
                errors.append(f"line {start}: unterminated code block")
                break
            body = lines[start:i]
            skip = SKIP.match(prev)
            if not info:
                errors.append(f"line {start}: a code block without an info "
                              "string (```sh or ```text)")
            elif info.split()[0] == "sh":
                if skip:
                    skipped += 1
                    print(f"readme: line {start}: skipped: {skip.group(1)}",
                          file=sys.stderr)
                else:
                    ran += 1
                    out.append(f"echo '==== README.md line {start}'")
                    out.extend(body)
            elif skip:
                errors.append(f"line {start}: a skip mark on a ```{info} block")
            prev = ""
            i += 1
            continue
        if line.startswith("    ") and prev == "" and i > 0 and \
           lines[i - 1] == "":
            errors.append(f"line {i + 1}: an indented code block; fence it "
                          "(```sh or ```text)")
        if line.strip():
            prev = line
        i += 1
    for e in errors:
        print(f"readme: {e}", file=sys.stderr)
    if errors:
        return 1
    if ran == 0:
        print("readme: no ```sh block to run", file=sys.stderr)
        return 1
    print(f"readme: {ran} blocks to run, {skipped} skipped", file=sys.stderr)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
