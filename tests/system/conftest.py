import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gwtest  # noqa: E402


@pytest.fixture
def procs(tmp_path):
    """Start real processes with procs.start([...], name, ready_port=...);
    all are stopped (and checked for sanitizer reports) after the test."""
    p = gwtest.Procs(tmp_path)
    yield p
    p.stop_all()
