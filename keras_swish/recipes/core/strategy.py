"""Distribution strategy and precision, chosen from the hardware or by name."""

import json
import os

from keras_swish.errors import UsageError

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


def split_cpu(devices):
    """Splits the CPU into `devices` logical devices (before TF starts).

    Lets MirroredStrategy run over several replicas on one CPU, for tests and
    for trying a distributed setup on a laptop.
    """
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current and len(current) == devices:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(devices)]
        )
    except RuntimeError as error:
        raise RuntimeError(
            f"Cannot split the CPU into {devices} devices: TensorFlow already started."
        ) from error


def tf_config_workers():
    """How many workers (chief included) TF_CONFIG names; 0 without it.

    Raises:
        UsageError: TF_CONFIG is not JSON of that form, or its `task` is not
            one of the chief and worker tasks its cluster names: every task
            here trains, under MultiWorkerMirroredStrategy, which has no
            `evaluator` or `ps` task (TensorFlow would run one alone, as a
            second writer of the run folder).
    """
    text = os.environ.get("TF_CONFIG", "") or "{}"
    try:
        config = json.loads(text)
        cluster = config.get("cluster", {})
        jobs = {"worker": cluster.get("worker", []), "chief": cluster.get("chief", [])}
        if not all(isinstance(job, list) for job in jobs.values()):
            raise TypeError("'worker' and 'chief' must be lists of host:port")
        addresses = [a for job in jobs.values() for a in job]
        for address in addresses:
            if not _is_address(address):
                raise TypeError(f"{address!r} is not host:port")
        if len(set(addresses)) < len(addresses):
            raise TypeError("an address is named twice")
        count = len(addresses)
        task = config.get("task") or {}
        task_type, index = task.get("type"), task.get("index", 0)
    except (json.JSONDecodeError, AttributeError, TypeError) as error:
        raise UsageError(
            "TF_CONFIG must be JSON like "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", '
            f'"index": 0}}}}. Received: TF_CONFIG={text[:200]!r} ({error})'
        ) from None
    if count and not (
        task_type in jobs
        and isinstance(index, int)
        and not isinstance(index, bool)
        and 0 <= index < len(jobs[task_type])
    ):
        raise UsageError(
            "TF_CONFIG's task must be one of the chief or worker tasks of its cluster "
            f"({len(jobs['chief'])} chief, {len(jobs['worker'])} worker): every task "
            "trains, and MultiWorkerMirroredStrategy has no evaluator or ps task. "
            f"Received: task={json.dumps(task)}"
        )
    return count


def _is_address(address):
    """Whether `address` is "host:port" (port 1-65535; an IPv6 host in brackets)."""
    if not isinstance(address, str):
        return False
    host, sep, port = address.rpartition(":")
    return (
        bool(sep and host.strip()) and port.isascii() and port.isdigit() and 0 < int(port) < 65536
    )


def make_strategy(name="auto", tpu=None):
    """Returns `(strategy, resolved_name)`.

    `auto`: TPUStrategy when `tpu` is given, MultiWorkerMirroredStrategy when
    TF_CONFIG names several workers, MirroredStrategy on several GPUs, the
    default strategy otherwise. `mirrored` without GPUs mirrors over the
    logical CPU devices. `multi_worker` is created before anything starts
    TensorFlow's runtime, and makes Keras's `fit` work under it
    (`keras_swish.activations.patch_multi_worker_fit`).
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy '{name}'. Choose one of: {', '.join(STRATEGIES)}.")
    workers = tf_config_workers() if not tpu else 0
    if workers > 1 and name not in ("auto", "multi_worker"):
        # Each machine would train alone (and, in one shared folder, each
        # would take the run folder as its chief).
        raise UsageError(
            f"TF_CONFIG names {workers} workers, which train together only with "
            f"--strategy multi_worker (or auto). Received: --strategy {name}"
        )
    if name == "auto" and workers > 1:
        name = "multi_worker"
    if name == "multi_worker":
        # Before anything starts TensorFlow's runtime (listing devices does):
        # collective ops must be configured at program startup.
        from keras_swish.activations import patch_multi_worker_fit

        patch_multi_worker_fit()
        return tf.distribute.MultiWorkerMirroredStrategy(), name
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        if tpu:
            name = "tpu"
        elif len(gpus) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "tpu":
        return _tpu_strategy(tf, tpu), name
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices), name
    if name == "one_device":
        device = gpus[0].name if gpus else "/cpu:0"
        return tf.distribute.OneDeviceStrategy(device), name
    return tf.distribute.get_strategy(), name


TPU_CONNECT_TIMEOUT_S = 10


def _probe(master):
    """Fails fast when a grpc://HOST:PORT TPU address does not accept connections.

    TensorFlow's own connection to an unreachable TPU worker retries for
    minutes; one TCP connect with a timeout says at once.
    """
    import socket
    import urllib.parse

    if not master or not master.startswith("grpc://"):
        return  # a local TPU (TPU VM): nothing to reach over the network
    address = urllib.parse.urlparse(master)
    try:
        with socket.create_connection(
            (address.hostname, address.port), timeout=TPU_CONNECT_TIMEOUT_S
        ):
            pass
    except OSError as error:
        raise RuntimeError(f"{master} does not accept connections ({error})") from error


def _tpu_strategy(tf, tpu):
    """TPUStrategy for `--tpu`; a TPU that cannot be found or reached is a usage error.

    TPUClusterResolver looks a name up through the Cloud TPU API and the GCE
    metadata server, which fails within seconds off Google Cloud; its errors
    (URLError, ValueError, RuntimeError, TensorFlow's NotFound/Unavailable/
    DeadlineExceeded) become one message that says what `--tpu` takes. Once it
    is found, only NotFound/Unavailable/DeadlineExceeded do: other errors of a
    TPU that was reached (Internal, ResourceExhausted, ...) keep their traceback.
    """
    import urllib.error

    from keras_swish.recipes.core.config import ConfigError

    def cannot_reach(error):
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return ConfigError(
            f"Cannot reach TPU {tpu or '(auto)'!r}: {reason}. --tpu takes the name of a Cloud "
            "TPU this machine can reach, its grpc://HOST:PORT address, or 'local' on a TPU VM."
        )

    try:  # finding it: the Cloud TPU client also raises RuntimeError (a TPU not ready)
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        _probe(resolver.master())
    except (urllib.error.URLError, ValueError, RuntimeError, *_not_found(tf)) as error:
        raise cannot_reach(error) from error
    try:  # starting it: only "not there" is a usage error, a failing TPU keeps its traceback
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except _not_found(tf) as error:
        raise cannot_reach(error) from error
    return tf.distribute.TPUStrategy(resolver)


def _not_found(tf):
    """TensorFlow's errors for a TPU that is not there or does not answer."""
    return (tf.errors.NotFoundError, tf.errors.UnavailableError, tf.errors.DeadlineExceededError)


def resolve_precision(precision, strategy_name):
    """`auto` → bfloat16 on TPU, float16 on GPU, float32 on CPU."""
    import tensorflow as tf

    if precision not in PRECISIONS:
        raise ValueError(
            f"Unknown precision '{precision}'. Choose one of: {', '.join(PRECISIONS)}."
        )
    if precision != "auto":
        return precision
    if strategy_name == "tpu":
        return "mixed_bfloat16"
    if tf.config.list_logical_devices("GPU"):
        return "mixed_float16"
    return "float32"
