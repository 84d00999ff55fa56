#!/usr/bin/env python3
"""Fails when two files of server/src import each other, through `use` or a
`crate::`/`super::` path in code (comments and tests aside). A path is
charged to the longest module prefix that is a file, so `crate::domain::X`
re-exported by domain/mod.rs names domain/mod.rs."""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..", "server", "src")


def module_of(path):
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel in (["lib"], ["main"]):
        return []
    return rel


def file_of(module, files):
    """The longest prefix of `module` that names a file."""
    for end in range(len(module), 0, -1):
        candidate = tuple(module[:end])
        if candidate in files:
            return candidate
    return None


def main():
    files = {}
    for dirpath, _, names in os.walk(ROOT):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(dirpath, name)
                files[tuple(module_of(path))] = path
    edges = {}
    pattern = re.compile(r"\b(crate|super)((?:::[a-z_][a-z0-9_]*)+)")
    for module, path in files.items():
        text = open(path).read()
        # Tests may reach anywhere.
        text = text.split("#[cfg(test)]")[0]
        # Comments and doc links name modules without importing them.
        text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))
        targets = set()
        for base, rest in pattern.findall(text):
            parts = rest.strip(":").split("::")
            if base == "crate":
                full = parts
            elif path.endswith("mod.rs"):
                # `super` of a mod.rs is the parent of its directory.
                full = list(module[:-1]) + parts
            else:
                full = list(module[:-1]) + parts
            target = file_of(full, files)
            if target is not None and target != module and target != ():
                targets.add(target)
        edges[module] = targets
    cycles = sorted(
        {tuple(sorted((a, b))) for a, targets in edges.items() for b in targets if a in edges.get(b, ())}
    )
    for a, b in cycles:
        print(f"import cycle: {'/'.join(a)} <-> {'/'.join(b)}")
    if cycles:
        sys.exit(1)
    print(f"no two files import each other ({len(files)} files)")


if __name__ == "__main__":
    main()
