"""`benchmarks/gpu_check.sh` as a user runs it, with stand-ins for the GPU.

No GPU is at hand here, so `nvidia-smi` and the Python that runs the
benchmarks are small scripts that log how they were called: the tests check
what the script runs, that it refuses a machine without a GPU, and that a
failing benchmark fails the check (its output goes through `tee`).
"""

import os
import shutil
import stat
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.sh")

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def executable(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def run(tmp_path, path_dirs, fail=None, quick=False, out_dir="logs", system=("/usr/bin", "/bin")):
    """Runs the script with `path_dirs` first on PATH (then `system`) and a
    stand-in Python that logs its arguments and exits 3 for the benchmark
    named `fail`."""
    calls = tmp_path / "calls.txt"
    python = executable(
        tmp_path / "python",
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        'echo "stand-in output for $*"\n'
        f'case "$*" in *"{fail or "-none-"}"*) exit 3;; esac\n',
    )
    env = {
        "PATH": os.pathsep.join([*path_dirs, *system]),
        "PYTHON": python,
        "HOME": str(tmp_path),
    }
    if out_dir:
        env["OUT_DIR"] = out_dir  # relative: to the directory the script is run from
    if quick:
        env["QUICK"] = "1"
    done = subprocess.run(
        [shutil.which("bash"), SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    lines = calls.read_text().splitlines() if calls.exists() else []
    return done, lines


@pytest.fixture
def fake_gpu(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    executable(
        bin_dir / "nvidia-smi",
        '#!/bin/sh\ncase "$*" in -L) echo "GPU 0: NVIDIA H200 (UUID: GPU-0)";; '
        '*) echo "NVIDIA H200, 570.00, 143771 MiB";; esac\n',
    )
    return str(bin_dir)


def test_no_gpu_exits_2_and_writes_nothing(tmp_path):
    # A PATH with only what the script needs before its GPU check, so that
    # a machine's own nvidia-smi is not found either.
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "dirname").symlink_to(shutil.which("dirname"))
    done, calls = run(tmp_path, [str(tools)], system=())
    assert done.returncode == 2
    assert "nvidia-smi not found" in done.stderr
    assert calls == [] and not (tmp_path / "logs").exists()


def test_runs_both_benchmarks_on_every_backend(tmp_path, fake_gpu):
    done, calls = run(tmp_path, [fake_gpu])
    assert done.returncode == 0, done.stdout + done.stderr
    speed = [c for c in calls if "activation_speed.py" in c]
    step = [c for c in calls if "train_step.py" in c]
    assert speed == [
        "benchmarks/activation_speed.py --runs 3 --dtype float32,bfloat16 "
        "--modes tensorflow,tensorflow-xla,jax,torch,torch-compile"
    ]
    assert step == ["benchmarks/train_step.py --steps 20 --jit-compile both"]
    logs = tmp_path / "logs"
    assert "NVIDIA H200" in (logs / "conditions.txt").read_text()
    assert "stand-in output" in (logs / "activation_speed.txt").read_text()
    assert "stand-in output" in (logs / "train_step.txt").read_text()


def test_quick_runs_the_small_sizes(tmp_path, fake_gpu):
    done, calls = run(tmp_path, [fake_gpu], quick=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(c.startswith("benchmarks/activation_speed.py --quick --runs 1 ") for c in calls)
    assert "benchmarks/train_step.py --quick --jit-compile both" in calls


@pytest.mark.parametrize("failing", ["activation_speed.py", "train_step.py"])
def test_a_failing_benchmark_fails_the_check(tmp_path, fake_gpu, failing):
    done, calls = run(tmp_path, [fake_gpu], fail=failing)
    assert done.returncode == 1, done.stdout + done.stderr
    # The other benchmark still runs: one failure does not hide the rest.
    assert any("activation_speed.py" in c for c in calls)
    assert any("train_step.py" in c for c in calls)


def test_logs_go_where_the_script_is_run_from(tmp_path, fake_gpu):
    done, _ = run(tmp_path, [fake_gpu], out_dir=None)
    assert done.returncode == 0, done.stdout + done.stderr
    (logs,) = tmp_path.glob("gpu_check-*")
    assert sorted(p.name for p in logs.iterdir()) == [
        "activation_speed.txt",
        "conditions.txt",
        "train_step.txt",
    ]
    assert f"logs in {logs}/" in done.stdout
