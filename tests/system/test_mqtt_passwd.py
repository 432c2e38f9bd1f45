"""mqtt-passwd: the real binary creates, adds, updates, deletes users; the
file is checked independently with hashlib.pbkdf2_hmac.

Run: GW_BUILD_DIR=build-x /usr/bin/python3 -m pytest tests/system/test_mqtt_passwd.py
"""
import base64
import hashlib
import os
import pty
import select
import stat
import subprocess
import time

import pytest

import gwtest

ITER = "1000"  # fast for tests; the default (210000) is exercised once
SANITIZER = gwtest.SANITIZER_MARKERS


def tool():
    return gwtest.binary("tools", "mqtt-passwd")


def run(*args, input=None):
    p = subprocess.run([tool(), *args], input=input, capture_output=True, timeout=60)
    err = p.stderr.decode(errors="replace")
    for m in SANITIZER:
        assert m not in err, err
    return p.returncode, p.stdout.decode(errors="replace"), err


def entries(path):
    """user -> (iterations, salt, hash) for every non-comment line."""
    out = {}
    with open(path, "rb") as f:
        for raw in f.read().split(b"\n"):
            if not raw or raw.startswith(b"#"):
                continue
            user, _, h = raw.partition(b":")
            scheme, it, salt, digest = h.split(b"$")
            assert scheme == b"pbkdf2-sha512"
            salt = base64.b64decode(salt, validate=True)
            digest = base64.b64decode(digest, validate=True)
            assert len(salt) == 16 and len(digest) == 64
            assert user.decode() not in out, "duplicate user"
            out[user.decode()] = (int(it), salt, digest)
    return out


def verifies(path, user, password):
    it, salt, digest = entries(path)[user]
    return hashlib.pbkdf2_hmac("sha512", password.encode(), salt, it, 64) == digest


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_create_add_update_delete(tmp_path):
    pw = str(tmp_path / "passwd")
    assert run("-c", "-b", "-i", ITER, pw, "alice", "s3cret")[0] == 0
    assert mode(pw) == 0o600
    assert verifies(pw, "alice", "s3cret")
    assert not verifies(pw, "alice", "s3cret ")
    assert entries(pw)["alice"][0] == 1000

    # add a tenant user, alice untouched
    before = entries(pw)["alice"]
    assert run("-b", "-i", ITER, pw, "bob@acme", "pässwörd")[0] == 0
    assert set(entries(pw)) == {"alice", "bob@acme"}
    assert entries(pw)["alice"] == before
    assert verifies(pw, "bob@acme", "pässwörd")

    # update alice: new salt and hash, same position, bob untouched
    bob = entries(pw)["bob@acme"]
    assert run("-b", "-i", "1500", pw, "alice", "n3w")[0] == 0
    e = entries(pw)
    assert list(e) == ["alice", "bob@acme"]
    assert e["bob@acme"] == bob
    assert e["alice"][0] == 1500 and e["alice"][1] != before[1]
    assert verifies(pw, "alice", "n3w") and not verifies(pw, "alice", "s3cret")

    # delete; deleting again fails and leaves the file as it was
    assert run("-D", pw, "alice")[0] == 0
    assert list(entries(pw)) == ["bob@acme"]
    snapshot = open(pw, "rb").read()
    rc, _, err = run("-D", pw, "alice")
    assert rc == 1 and "not found" in err
    assert open(pw, "rb").read() == snapshot
    assert mode(pw) == 0o600
    # no temporary files left behind
    assert os.listdir(tmp_path) == ["passwd"]


def test_create_overwrites_and_keeps_comments(tmp_path):
    pw = str(tmp_path / "passwd")
    assert run("-c", "-b", "-i", ITER, pw, "a", "x")[0] == 0
    with open(pw, "a") as f:
        f.write("# operators: keep me\n")
    assert run("-b", "-i", ITER, pw, "b", "y")[0] == 0
    text = open(pw).read()
    assert "# operators: keep me\n" in text
    assert set(entries(pw)) == {"a", "b"}
    assert run("-c", "-b", "-i", ITER, pw, "c", "z")[0] == 0
    assert set(entries(pw)) == {"c"}


def test_password_from_stdin(tmp_path):
    pw = str(tmp_path / "passwd")
    assert run("-c", "-b", "-i", ITER, pw, "a", "x")[0] == 0
    rc, _, err = run("-i", ITER, pw, "dev01", input=b"from stdin\n")
    assert rc == 0, err
    assert verifies(pw, "dev01", "from stdin")
    # no newline at EOF is fine too
    assert run("-i", ITER, pw, "dev02", input=b"no-newline")[0] == 0
    assert verifies(pw, "dev02", "no-newline")
    # empty input or an empty password is refused, file unchanged
    snapshot = open(pw, "rb").read()
    assert run("-i", ITER, pw, "dev03", input=b"")[0] == 1
    assert run("-i", ITER, pw, "dev03", input=b"\n")[0] == 1
    # password longer than the MQTT field (65535 bytes)
    rc, _, err = run("-i", ITER, pw, "dev03", input=b"x" * 70000 + b"\n")
    assert rc == 1 and "longer than" in err
    assert open(pw, "rb").read() == snapshot


def _pty_run(args, lines):
    """Run with a pseudo-terminal as stdin; answer each prompt with a line.
    Returns (rc, everything the terminal showed)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([tool(), *args], stdin=slave, stdout=slave, stderr=slave,
                         start_new_session=True)
    os.close(slave)
    shown = b""
    answers = list(lines)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
            if answers and shown.rstrip().lower().endswith(b"password:"):
                os.write(master, answers.pop(0) + b"\n")
        elif p.poll() is not None:
            break
    try:
        rc = p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise AssertionError(f"mqtt-passwd hung on the terminal; it showed: {shown!r}")
    finally:
        os.close(master)
    return rc, shown.decode(errors="replace")


def test_prompt_on_terminal_echo_off(tmp_path):
    pw = str(tmp_path / "passwd")
    assert run("-c", "-b", "-i", ITER, pw, "a", "x")[0] == 0
    rc, shown = _pty_run(["-i", ITER, pw, "tty-user"], [b"typed-secret", b"typed-secret"])
    assert rc == 0, shown
    assert "Password:" in shown and "Reenter password:" in shown
    assert "typed-secret" not in shown  # echo was off
    assert verifies(pw, "tty-user", "typed-secret")
    rc, shown = _pty_run(["-i", ITER, pw, "tty-user2"], [b"one", b"two"])
    assert rc == 1 and "do not match" in shown
    assert "tty-user2" not in entries(pw)


def test_usage_and_refusals(tmp_path):
    pw = str(tmp_path / "passwd")
    assert run("-c", "-b", "-i", ITER, pw, "a", "x")[0] == 0
    snapshot = open(pw, "rb").read()
    assert run(pw)[0] == 2                                # missing USER
    assert run(pw, "u", "pass")[0] == 2                   # PASSWORD needs -b
    assert run("-b", pw, "u")[0] == 2                     # -b needs PASSWORD
    assert run("-D", "-c", pw, "a")[0] == 2
    assert run("-i", "999", "-b", pw, "u", "p")[0] == 2   # below the minimum
    assert run("-i", "12x", "-b", pw, "u", "p")[0] == 2
    rc, _, err = run("-b", pw, "us:er", "p")
    assert rc == 2 and "':'" in err
    assert run("-b", pw, "#u", "p")[0] == 2
    assert run("-h")[0] == 0
    assert open(pw, "rb").read() == snapshot


def test_malformed_file_not_rewritten(tmp_path):
    pw = tmp_path / "passwd"
    pw.write_text("a:pbkdf2-sha512$1000$AAAA$BBBB\n# fine\nbroken line\n")
    before = pw.read_bytes()
    rc, _, err = run("-b", "-i", ITER, str(pw), "b", "p")
    assert rc == 1
    assert f"{pw}:1: salt is not 16 bytes" in err
    assert pw.read_bytes() == before
    rc, _, err = run("-b", "-i", ITER, str(tmp_path / "missing"), "b", "p")
    assert rc == 1 and "No such file" in err


def test_default_iterations(tmp_path):
    pw = str(tmp_path / "passwd")
    t0 = time.monotonic()
    assert run("-c", "-b", pw, "slow", "p4ss")[0] == 0
    elapsed = time.monotonic() - t0
    assert entries(pw)["slow"][0] == 210000
    assert verifies(pw, "slow", "p4ss")
    print(f"mqtt-passwd at 210000 iterations: {elapsed * 1000:.0f} ms")
