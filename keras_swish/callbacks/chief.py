"""Which process writes summaries: the chief, once per training job."""

import json
import os


def _task_from_tf_config():
    """`(task_type, task_id, cluster)` from the TF_CONFIG variable."""
    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except ValueError:
        return None, None, {}
    if not isinstance(config, dict):
        return None, None, {}
    task = config.get("task") or {}
    cluster = config.get("cluster") or {}
    return task.get("type"), task.get("index", 0), cluster


def _chief_by_task(task_type, task_id, cluster):
    if not task_type:
        return True  # Not part of a cluster.
    if task_type == "chief":
        return True
    if task_type == "worker":
        return "chief" not in cluster and int(task_id or 0) == 0
    return False  # "ps", "evaluator" and other helpers never write.


def is_chief(strategy=None):
    """Whether this process is the one that writes summaries.

    - `tf.distribute` strategies that span processes
      (`MultiWorkerMirroredStrategy`, `ParameterServerStrategy`): the task
      of type `"chief"`, or worker 0 when the cluster has no chief, read from
      the strategy's cluster resolver or else from `TF_CONFIG`.
    - One-process strategies (default, `MirroredStrategy`, `OneDeviceStrategy`,
      `TPUStrategy`): this process. Their Keras callbacks run once per step,
      not once per replica, so one process writes one set of summaries.
    - JAX with several processes (`keras.distribution`): process 0.
    - PyTorch with `torch.distributed` initialised: rank 0.

    Args:
        strategy: The model's `tf.distribute.Strategy`, or None.

    Returns:
        A bool.
    """
    if strategy is not None:
        extended = getattr(strategy, "extended", None)
        multi_worker = getattr(extended, "_in_multi_worker_mode", None)
        resolver = getattr(strategy, "cluster_resolver", None)
        if callable(multi_worker) and multi_worker():
            task_type = getattr(resolver, "task_type", None)
            if task_type:
                cluster = {}
                try:
                    cluster = resolver.cluster_spec().as_dict()
                except Exception:  # A resolver without a usable cluster spec.
                    pass
                return _chief_by_task(task_type, resolver.task_id, cluster)
            return _chief_by_task(*_task_from_tf_config())
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.process_index() == 0
    if backend == "torch":
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank() == 0
    return True
