import subprocess
import sys

from facs.cli import main


def test_help_lists_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "fetch-examples" in out


def test_console_script_runs():
    res = subprocess.run([sys.executable, "-m", "facs.cli", "--version"], capture_output=True)
    assert res.returncode == 0
    assert res.stdout.strip() == b"0.1.0"
