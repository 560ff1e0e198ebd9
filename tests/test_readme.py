"""The README's Python examples and its main command work as written."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_python_blocks():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


@pytest.mark.parametrize("index", range(len(readme_python_blocks())))
def test_readme_python_example_runs(index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_python_blocks()[index], f"README block {index}", "exec"), {})
    if "print(sum(isinstance" in readme_python_blocks()[index]:
        assert capsys.readouterr().out.strip().splitlines()[-1] == "27"


def test_readme_commands_are_the_ci_commands():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        ci = f.read()
    commands = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    assert commands[0] == "pip install -e . && keras-swish train mobilenet"
    assert commands[1] in ci.splitlines()


def test_quickstart_learns(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "examples", "quickstart.py"),
            "--epochs",
            "2",
            "--output",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    accuracy = float(re.search(r"validation accuracy: ([0-9.]+)", result.stdout).group(1))
    assert accuracy > 0.8, result.stdout  # chance is 0.1
    assert "β restored exactly: True" in result.stdout
    assert os.path.exists(tmp_path / "model.keras")
    assert os.listdir(tmp_path / "logs" / "train")
    assert f"TensorBoard logs: {tmp_path / 'logs'}" in result.stdout


def test_quickstart_rejects_bad_epochs():
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "quickstart.py"), "--epochs", "0"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "--epochs must be at least 1. Received: 0" in result.stderr
    assert "Traceback" not in result.stderr
