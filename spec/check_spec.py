#!/usr/bin/env python3
"""Consistency check of spec/mqtt-over-amqp.md.

Checks, and exits 1 listing every problem found:
  1. section numbering: "## N." and "### N.M" headings ascend without gaps
     or duplicates;
  2. every cross-reference "spec N.M" (in the spec, docs/architecture.md and
     spec/README.md) names an existing section, and "spec N.M step K" an
     existing step of that section's sequence;
  3. every wire constant of core/include/gw/spec.h (subjects, annotation
     keys, error condition) and every default address (the initializer of
     gw_spec_default_addrs in core/src/spec/) appears in the spec in
     backquotes;
  4. every message kind of the catalogue (AMQP_WILL ... AMQP_PUBREL) has a
     section 3.x heading, and every gw_spec_kind_t value maps to one.

Usage: spec/check_spec.py [--root REPO] [--spec FILE] [--header FILE]
"""
import argparse
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

KINDS = ["AMQP_PUBLISH", "AMQP_WILL", "AMQP_WILL_CLEAR", "AMQP_LIST", "AMQP_SUBSCRIPTIONS",
         "AMQP_CLOSE", "AMQP_SUBSCRIBE", "AMQP_UNSUBSCRIBE", "AMQP_PUBREL"]


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def sections(text):
    """{"4": title, "4.9": title} and the list of problems in numbering."""
    found, problems = {}, []
    last_major, last_minor = 0, 0
    in_code = False
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        m = re.match(r"^## (\d+)\. (.+)$", line)
        if m:
            major = int(m.group(1))
            if major != last_major + 1:
                problems.append(f"line {lineno}: section {major} follows {last_major}")
            last_major, last_minor = major, 0
            found[str(major)] = m.group(2)
            continue
        m = re.match(r"^### (\d+)\.(\d+) (.+)$", line)
        if m:
            major, minor = int(m.group(1)), int(m.group(2))
            if major != last_major or minor != last_minor + 1:
                problems.append(f"line {lineno}: section {major}.{minor} follows "
                                f"{last_major}.{last_minor}")
            last_minor = minor
            key = f"{major}.{minor}"
            if key in found:
                problems.append(f"line {lineno}: duplicate section {key}")
            found[key] = m.group(3)
    return found, problems


def steps_of(text):
    """{"4.9": {"1", "2", ...}}: step numbers of the first code block of each section."""
    out, current, in_code, done = {}, None, False, set()
    for line in text.splitlines():
        m = re.match(r"^### (\d+\.\d+) ", line)
        if m and not in_code:
            current = m.group(1)
            continue
        if line.startswith("```"):
            if in_code:
                done.add(current)
            in_code = not in_code
            continue
        if in_code and current and current not in done:
            m = re.match(r"^\s*(\d+)(?:-(\d+))?['\"]*\s", line)
            if m:
                lo = int(m.group(1))
                hi = int(m.group(2)) if m.group(2) else lo
                out.setdefault(current, set()).update(str(i) for i in range(lo, hi + 1))
    return out


def check_refs(name, text, found, steps, problems):
    for m in re.finditer(r"spec (\d+(?:\.\d+)?)(?: step (\d+))?", text):
        sec, step = m.group(1), m.group(2)
        line = text.count("\n", 0, m.start()) + 1
        if sec not in found:
            problems.append(f"{name}:{line}: 'spec {sec}' names no section")
        elif step and step not in steps.get(sec, set()):
            problems.append(f"{name}:{line}: 'spec {sec} step {step}' names no step")


def header_constants(header):
    consts = {}
    for m in re.finditer(r'#define (GW_SPEC_(?:SUBJECT|ANNO|COND)_\w+) "([^"]+)"', header):
        consts[m.group(1)] = m.group(2)
    return consts


def default_addresses(src_dir):
    addrs = set()
    if not os.path.isdir(src_dir):
        return addrs
    # Only the initializer of gw_spec_default_addrs, not examples in comments.
    for fn in sorted(os.listdir(src_dir)):
        if fn.endswith(".c"):
            m = re.search(r"gw_spec_default_addrs\s*=\s*\{(.*?)\};", read(os.path.join(src_dir, fn)),
                          re.S)
            if m:
                addrs.update(re.findall(r'=\s*"([^"]*)"', m.group(1)))
    return addrs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.path.dirname(HERE))
    ap.add_argument("--spec")
    ap.add_argument("--header")
    args = ap.parse_args()
    spec_path = args.spec or os.path.join(args.root, "spec", "mqtt-over-amqp.md")
    header_path = args.header or os.path.join(args.root, "core", "include", "gw", "spec.h")

    spec = read(spec_path)
    found, problems = sections(spec)
    steps = steps_of(spec)

    check_refs(os.path.basename(spec_path), spec, found, steps, problems)
    for extra in (os.path.join(args.root, "docs", "architecture.md"),
                  os.path.join(args.root, "spec", "README.md")):
        if os.path.exists(extra):
            check_refs(os.path.relpath(extra, args.root), read(extra), found, steps, problems)

    if os.path.exists(header_path):
        consts = header_constants(read(header_path))
        if not consts:
            problems.append(f"{header_path}: no GW_SPEC_* string constants found")
        for name, value in sorted(consts.items()):
            if f"`{value}`" not in spec:
                problems.append(f"{name} = \"{value}\" does not appear as `{value}` in the spec")
    else:
        problems.append(f"{header_path}: missing")

    for addr in sorted(default_addresses(os.path.join(args.root, "core", "src", "spec"))):
        if f"`{addr}" not in spec:
            problems.append(f"default address \"{addr}\" (core/src/spec) is not in the spec")

    titles = " ".join(t for k, t in found.items() if k.startswith("3."))
    for kind in KINDS:
        if not re.search(r"\b" + kind + r"\b", titles):
            problems.append(f"{kind} has no section 3.x heading")

    for p in problems:
        print("check_spec: " + p)
    n_steps = sum(len(v) for v in steps.values())
    print(f"check_spec: {len(found)} sections, {n_steps} sequence steps, "
          f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
