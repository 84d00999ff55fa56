#!/usr/bin/env python3
"""Lists the functions of server/src longer than LIMIT lines (default 100),
tests aside, and fails when there is one: a function that long hides more
than one job."""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..", "server", "src")
LIMIT = int(sys.argv[1]) if len(sys.argv) > 1 else 100
START = re.compile(r"^\s*(pub(\([a-z]+\))?\s+)?(async\s+)?(const\s+)?fn\s+([a-z_0-9]+)")


def long_functions(path):
    lines = open(path).read().split("#[cfg(test)]")[0].splitlines()
    found = []
    index = 0
    while index < len(lines):
        match = START.match(lines[index])
        if not match or lines[index].rstrip().endswith(";"):
            index += 1
            continue
        depth = 0
        opened = False
        end = index
        while end < len(lines):
            code = re.sub(r'"([^"\\]|\\.)*"', '""', lines[end].split("//")[0])
            depth += code.count("{") - code.count("}")
            opened = opened or "{" in code
            if opened and depth <= 0:
                break
            end += 1
        length = end - index + 1
        if length > LIMIT:
            found.append((match.group(5), index + 1, length))
        index = end + 1 if opened else index + 1
    return found


def main():
    failures = []
    for dirpath, _, names in os.walk(ROOT):
        for name in sorted(names):
            if name.endswith(".rs"):
                path = os.path.join(dirpath, name)
                for function, line, length in long_functions(path):
                    failures.append(f"{os.path.relpath(path, ROOT)}:{line}: fn {function} has {length} lines (limit {LIMIT})")
    for failure in failures:
        print(failure)
    if failures:
        sys.exit(1)
    print(f"no function of server/src is longer than {LIMIT} lines")


if __name__ == "__main__":
    main()
