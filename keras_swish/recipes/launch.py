"""`keras-swish launch --workers N EXPERIMENT [train flags]`: N workers on this machine.

Each worker is an ordinary `keras-swish train EXPERIMENT [train flags]`
process with its own `TF_CONFIG` naming every worker on a free loopback port
(worker 0 is the chief). The chief's output streams to this terminal; the
other workers' goes to log files. When any worker fails, the others are
stopped and the failing worker's last lines are shown, so nothing waits on a
dead peer. On N machines, run the same `keras-swish train` on each with a
`TF_CONFIG` naming all of them (see the README); this command is that setup
on one machine, for trying it out and for the tests.
"""

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from keras_swish.errors import UsageError

_GRACE_S = 10  # between SIGTERM and SIGKILL (TF catches a multi-worker one's SIGTERM)


def free_ports(count):
    """`count` distinct free TCP ports on 127.0.0.1."""
    sockets, ports = [], []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in sockets:
            s.close()
    return ports


def tf_config(ports, index):
    """The TF_CONFIG of worker `index` in a loopback cluster on `ports`."""
    return json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
            "task": {"type": "worker", "index": index},
        }
    )


def child_setup(cores, parent, death_signal=signal.SIGTERM):
    """In a child process before it starts: its CPU cores, and (Linux) a signal
    when its parent dies — also by `kill -9` — so that no orphaned worker or run
    keeps training, holding its run folder's lock, while a rerun starts it again.

    Args:
        cores: CPU cores to pin it to, or None.
        parent: The parent's pid (the child exits at once if it is already gone).
        death_signal: The signal. A MultiWorkerMirroredStrategy worker needs
            SIGKILL: TensorFlow's coordination service catches SIGTERM there
            (as a preemption notice) and the worker goes on.
    """
    if cores:
        os.sched_setaffinity(0, cores)
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(death_signal))
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)


@contextlib.contextmanager
def stop_on_termination():
    """SIGTERM and SIGHUP (`kill`, a closed terminal, a CI job's timeout) raise
    SystemExit(128 + signal) here, so that a supervisor's `except BaseException`
    stops its children before it exits. Only in the main thread (Python's rule)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop(processes):
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + _GRACE_S
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        if process.poll() is None:
            process.kill()
            process.wait()


def _tail(path, lines=20):
    with open(path, encoding="utf-8", errors="replace") as f:
        return "".join(f.readlines()[-lines:])


def supervise(processes, names, log_paths, command, poll_s=0.5, done_when_first_ends=None):
    """Waits for `processes`; stops them all as soon as one fails.

    Args:
        processes: The `subprocess.Popen`s.
        names: What to call each in messages ("worker 1", "tuner0").
        log_paths: Each one's log file, or None for one whose output is this command's.
        command: The sub-command, for messages (`keras-swish COMMAND: ...`).
        poll_s: How often to look.
        done_when_first_ends: Seconds after the first process ended with 0 at
            which the rest are stopped and 0 returned (None: wait for all).

    Returns:
        0 when every process ended with 0, else the exit status of the first that failed.
    """
    first_done = None
    while True:
        codes = [p.poll() for p in processes]
        failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            index, code = failed[0]
            _stop(processes)
            where = log_paths[index] or "above"
            detail = "\n" + _tail(where) if log_paths[index] else ""
            advice = "Fix its input" if code == 2 else "Re-run the command to resume"
            print(
                f"keras-swish {command}: {names[index]} failed (exit status {code}); "
                f"stopped the others. {advice}. Its output: {where}{detail}",
                file=sys.stderr,
                flush=True,
            )
            return code if code > 0 else 1
        if all(c == 0 for c in codes):
            return 0
        if done_when_first_ends is not None and codes[0] == 0:
            first_done = first_done or time.monotonic()
            if time.monotonic() - first_done > done_when_first_ends:
                _stop(processes)
                return 0
        time.sleep(poll_s)


def launch(workers, train_args, poll_s=0.5):
    """Runs `keras-swish train *train_args` as `workers` loopback workers.

    Args:
        workers: How many worker processes (at least 2).
        train_args: The arguments after `train` (experiment and flags).
        poll_s: How often to check the workers.

    Returns:
        0 when every worker finished; else the exit status of the first
        worker that failed (the others are stopped).
    """
    if workers < 2:
        raise UsageError(f"--workers must be at least 2. Received: --workers {workers}")
    if not train_args or train_args[0].startswith("-"):
        raise UsageError("launch needs an experiment or recipe, e.g. launch --workers 2 mobilenet")
    for arg in train_args:
        flag, _, value = arg.partition("=")
        # Also the prefixes argparse takes (--strat, --tp), and the keys of --set.
        if (
            (flag.startswith("--str") and "--strategy".startswith(flag))
            or (flag.startswith("--tp") and "--tpu".startswith(flag))
            or (value if flag == "--set" else arg).startswith(("train.strategy=", "train.tpu="))
        ):
            raise UsageError(
                "launch sets the strategy (multi_worker, through TF_CONFIG and "
                f"--strategy auto); leave out {arg}."
            )
    ports = free_ports(workers)
    logs = tempfile.mkdtemp(prefix="keras-swish-launch-")
    command = [sys.executable, "-m", "keras_swish_cli", "train", *train_args]
    processes, names, log_paths = [], [], []
    print(
        f"Launching {workers} workers on 127.0.0.1 ports {', '.join(map(str, ports))}; "
        f"worker 0 is the chief, the others log to {logs}",
        flush=True,
    )
    with stop_on_termination():
        try:
            for index in range(workers):
                env = dict(os.environ, TF_CONFIG=tf_config(ports, index), PYTHONUNBUFFERED="1")
                names.append(f"worker {index}")
                log_paths.append(None if index == 0 else os.path.join(logs, f"worker-{index}.log"))
                if index == 0:
                    out = None  # the chief's output is this command's
                else:
                    out = open(log_paths[-1], "w", encoding="utf-8")
                processes.append(
                    subprocess.Popen(
                        command,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT if out else None,
                        preexec_fn=functools.partial(
                            child_setup, None, os.getpid(), signal.SIGKILL
                        ),
                    )
                )
                if out is not None:
                    out.close()
            code = supervise(processes, names, log_paths, "launch", poll_s=poll_s)
            if code == 0:
                shutil.rmtree(logs, ignore_errors=True)
            return code
        except BaseException:
            _stop(processes)
            raise
