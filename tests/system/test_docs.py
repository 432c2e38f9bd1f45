"""The operator documentation matches the programs.

* docs/configuration.md is what tools/gen_config_docs.sh generates from the
  option tables of the built binaries (GW_CONFIG_MARKDOWN=1), i.e. it is
  not stale;
* every program prints, with GW_CONFIG_MARKDOWN=1, a table holding every
  option of its --help;
* the examples of the configuration page (JSON file, error lines) are what
  the real mqtt-gateway accepts and prints;
* every --option named in docs/migrating.md exists in some program;
* relative links of README.md, docs/ and the component READMEs resolve, and
  docs/README.md indexes every page of docs/.

Run: GW_BUILD_DIR=<build> /usr/bin/python3 -m pytest tests/system/test_docs.py
"""
import difflib
import json
import os
import re
import subprocess

import pytest

import gwtest

DOCS = os.path.join(gwtest.REPO, "docs")
GEN = os.path.join(gwtest.REPO, "tools", "gen_config_docs.sh")
CONF_MD = os.path.join(DOCS, "configuration.md")

# (path in the build dir, environment prefix)
PROGRAMS = [
    (("gateway", "mqtt-gateway"), "GW_"),
    (("services", "will", "will-service"), "WILL_"),
    (("services", "subscription", "subscription-service"), "SUBS_"),
    (("tests", "bench", "mqtt_load", "mqtt-load"), "MQTTLOAD_"),
]


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def run(args, env=None, timeout=30):
    full = dict(os.environ)
    full.pop("GW_CONFIG_MARKDOWN", None)
    full.update(env or {})
    return subprocess.run(args, capture_output=True, text=True, env=full, timeout=timeout)


def no_sanitizer_report(text):
    for marker in gwtest.SANITIZER_MARKERS:
        assert marker not in text, text


def help_options(path):
    """Option names of a program, from its --help."""
    r = run([path, "--help"])
    assert r.returncode == 0, r.stderr
    names = [n for n in re.findall(r"^  --(?:\[no-\])?([a-z0-9-]+)", r.stdout, re.M)
             if n not in ("help", "version")]
    assert "config" in names and len(names) > 3, r.stdout
    return names


def test_configuration_md_not_stale(tmp_path):
    out = tmp_path / "configuration.md"
    r = run(["bash", GEN, gwtest.BUILD, str(out)], timeout=120)
    assert r.returncode == 0, f"{GEN} failed:\n{r.stdout}{r.stderr}"
    fresh = out.read_text(encoding="utf-8")
    committed = read(CONF_MD)
    if fresh != committed:
        diff = "".join(difflib.unified_diff(
            committed.splitlines(keepends=True), fresh.splitlines(keepends=True),
            "docs/configuration.md (committed)", "docs/configuration.md (generated)"))
        lines = diff.splitlines(keepends=True)
        if len(lines) > 200:
            diff = "".join(lines[:200]) + f"... ({len(lines) - 200} more diff lines)\n"
        pytest.fail("docs/configuration.md is stale; regenerate it with\n"
                    f"    tools/gen_config_docs.sh {gwtest.BUILD}\n\n{diff}")


def test_generator_writes_stdout_and_refuses_bad_build_dir(tmp_path):
    out = tmp_path / "configuration.md"
    r = run(["bash", GEN, gwtest.BUILD, str(out)], timeout=120)
    assert r.returncode == 0, r.stderr
    r = run(["bash", GEN, gwtest.BUILD, "-"], timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == out.read_text(encoding="utf-8")
    assert r.stdout.startswith("# Configuration reference\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run(["bash", GEN, str(empty)])
    assert r.returncode == 1
    assert "not built" in r.stderr
    r = run(["bash", GEN])
    assert r.returncode == 2


@pytest.mark.parametrize("parts,prefix", PROGRAMS, ids=[p[0][-1] for p in PROGRAMS])
def test_markdown_hook_lists_every_option(parts, prefix):
    path = gwtest.binary(*parts)
    # the hook wins over arguments that would otherwise be errors
    r = run([path, "--no-such-option", "positional"], env={"GW_CONFIG_MARKDOWN": "1"})
    assert r.returncode == 0, r.stderr
    no_sanitizer_report(r.stderr)
    assert r.stdout.startswith(f"### {parts[-1]}\n"), r.stdout[:200]
    rows = re.findall(r"^\| `--(?:\[no-\])?([a-z0-9-]+)` \|.*\| `([A-Z0-9_]+)` \|",
                      r.stdout, re.M)
    assert rows, r.stdout
    for name, env in rows:
        assert env == prefix + name.upper().replace("-", "_"), (name, env)
    assert [n for n, _ in rows] == help_options(path)
    # and the committed page holds this program's section
    assert f"### {parts[-1]}\n" in read(CONF_MD)
    # any other value of the variable is a normal start (here: a bad flag)
    r = run([path, "--no-such-option"], env={"GW_CONFIG_MARKDOWN": "0"})
    assert r.returncode == 2
    assert "--no-such-option: unknown option" in r.stderr


def test_json_example_is_accepted(tmp_path):
    text = read(CONF_MD)
    m = re.search(r"```json\n(.*?)```", text, re.S)
    assert m, "no JSON example in docs/configuration.md"
    example = json.loads(m.group(1))
    conf = tmp_path / "gateway.json"
    conf.write_text(m.group(1), encoding="utf-8")
    gw = gwtest.binary("gateway", "mqtt-gateway")
    names = help_options(gw)
    for key in example:
        assert key in names, f"{key} is not an mqtt-gateway option"
    # A bad flag makes the real loader stop after reading the file: the only
    # complaint must be the flag's, so the file itself was accepted.
    r = run([gw, "--config", str(conf), "--max-packet-size=0"])
    assert r.returncode == 2
    assert r.stderr == 'mqtt-gateway: --max-packet-size: "0" below minimum 16 (flag)\n'


def test_documented_errors_are_real(tmp_path):
    text = read(CONF_MD)
    section = text.split("## Errors", 1)[1].split("\n## ", 1)[0]
    documented = [ln.strip() for ln in section.splitlines() if ln.startswith("    mqtt-gateway: ")]
    assert len(documented) >= 3, section
    conf = tmp_path / "gateway.json"
    conf.write_text('{"workers": "2"}', encoding="utf-8")
    gw = gwtest.binary("gateway", "mqtt-gateway")
    r = run([gw, "--config", str(conf), "--max-packet-size=0", "--bogus"],
            env={"GW_INFLIGHT_WINDOW": "0"})
    assert r.returncode == 2
    no_sanitizer_report(r.stderr)
    got = r.stderr.replace(str(conf), "/etc/gw/gateway.json").splitlines()
    for line in documented:
        assert line in got, f"documented {line!r} not printed; got {got}"
    # the cross-option example
    r = run([gwtest.binary("services", "will", "will-service")])
    assert r.returncode == 2
    assert r.stderr.strip() in " ".join(section.split())


def test_migrating_options_exist():
    text = read(os.path.join(DOCS, "migrating.md"))
    known = {"help", "version", "no"}
    for parts, _ in PROGRAMS:
        known.update(help_options(gwtest.binary(*parts)))
    named = set(re.findall(r"(?<![\w-])--(?:no-)?([a-z][a-z0-9-]*)", text))
    assert named, "docs/migrating.md names no option"
    unknown = sorted(n for n in named if n not in known)
    assert not unknown, f"docs/migrating.md names options no program has: {unknown}"


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def doc_files():
    files = [os.path.join(gwtest.REPO, "README.md")]
    files += [os.path.join(DOCS, f) for f in sorted(os.listdir(DOCS)) if f.endswith(".md")]
    for sub in ("gateway", "services/will", "services/subscription", "spec"):
        p = os.path.join(gwtest.REPO, sub, "README.md")
        if os.path.exists(p):
            files.append(p)
    return files


def test_relative_links_resolve():
    broken = []
    for path in doc_files():
        for target in LINK.findall(read(path)):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            file_part = target.split("#", 1)[0]
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part))
            if not os.path.exists(resolved):
                broken.append(f"{os.path.relpath(path, gwtest.REPO)}: {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_docs_index_lists_every_page():
    index = read(os.path.join(DOCS, "README.md"))
    linked = {os.path.normpath(t.split("#", 1)[0]) for t in LINK.findall(index)}
    pages = sorted(f for f in os.listdir(DOCS) if f.endswith(".md") and f != "README.md")
    missing = [p for p in pages if p not in linked]
    assert not missing, f"docs/README.md does not link {missing}"
