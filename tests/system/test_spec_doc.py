"""spec/ stays consistent with itself and with the code's constants.

spec/check_spec.py checks section numbering, every "spec N.M step K"
citation in spec/ and docs/, and that every subject, annotation, error
condition and default address defined in core/ appears in the spec.
"""
import os
import subprocess
import sys

import gwtest


def test_spec_consistent():
    r = subprocess.run([sys.executable, os.path.join(gwtest.REPO, "spec", "check_spec.py")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 problem" in r.stdout
