"""Process-wide settings of the command line (dnaimg.runtime)."""
import platform

import pytest

from helpers import cli


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_keep_freed_memory_applies_on_glibc():
    from dnaimg.runtime import keep_freed_memory
    assert keep_freed_memory() is True


def test_the_command_line_applies_it(monkeypatch):
    import dnaimg.runtime
    calls = []
    monkeypatch.setattr(dnaimg.runtime, "keep_freed_memory", lambda: calls.append(1) or True)
    res = cli("models")
    assert res.exit_code == 0 and calls == [1]
