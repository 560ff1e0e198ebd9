"""The op's CPU kernel: x·σ(βx) and its gradient in one pass each, in C++.

Why a hand-written kernel: on CPU neither compiler the backends ship fuses
this op's backward pass into one loop. XLA's CPU backend emits dx and the dβ
reduction as separate loops and runs the reduction on one thread; Inductor
fuses them (groups of rows) but calls a vector exp out of line, spilling
every live register around each call (`benchmarks/README.md`). Keras's SiLU
has ATen's hand-written kernels on PyTorch; this is the same for x·σ(βx) with
a per-channel β: one loop over x writes f, one over x and dy writes dx and
partial dβ sums per block of rows, 16 floats at a time in vector extensions
(whatever vectors the CPU has), with the exp written out inline.

Built from `_cpu_kernel.cc` (next to this file) on first use with the C++
compiler on the PATH (`$CXX`, else `c++`, `g++` or `clang++`) and cached
under `$KERAS_SWISH_CACHE_DIR` (default `~/.cache/keras_swish`), keyed by the
source, the compiler, the flags and the CPU's features — never at install
time. Where no compiler works, the op warns once and keeps its other paths.
`KERAS_SWISH_CPU_KERNEL=0` (or `keras_swish.ops.CPU_KERNEL = False`) turns
the kernel off.
"""

import ctypes
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_cpu_kernel.cc")

# Tiles narrower than this are repeated along the row (a scalar β, or a few
# channels), so that the inner loop is long enough to vectorize.
MIN_WIDTH = 64
# Below this many elements one thread: waking a second costs more.
MIN_PARALLEL = 1 << 15

DTYPE_CODES = {"float32": 0, "bfloat16": 1, "float16": 2}

_LOCK = threading.Lock()
_LIBRARIES = {}  # "plain" or "xla" -> ctypes.CDLL, or None after a failure
FAILURES = []  # what went wrong, once per flavour


def env_switch(name):
    """False where the environment variable `name` is 0, false, no or off
    (any case); True where it is anything else or unset."""
    value = os.environ.get(name, "1").strip().lower()
    return value not in ("0", "false", "no", "off")


def cache_dir():
    root = os.environ.get("KERAS_SWISH_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "keras_swish")
    return os.path.join(root, "cpu_kernels")


def _compilers():
    """The compiler command (a list: `CXX="ccache g++"` works), or none."""
    named = os.environ.get("CXX")
    if named:
        return [shlex.split(named)]
    return [[c] for c in ("c++", "g++", "clang++") if shutil.which(c)][:1]


def _cpu_features():
    """What `-march=native` depends on, for the cache key (a cache shared
    between machines must not hand one CPU another's instructions)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    import platform

    return platform.processor() + platform.machine()


def _flag_sets(flavour):
    base = ["-O3", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno", "-fno-trapping-math"]
    if flavour == "xla":
        import jax.ffi

        base += ["-DKS_XLA_FFI", "-I", jax.ffi.include_dir()]
    # Best first; each fallback drops what a compiler may not support
    # (Apple's clang has no -fopenmp; some targets no -march=native; a
    # compiler may announce _Float16 that its C++ cannot use: -DKS_NO_FLOAT16).
    extras = (["-march=native", "-fopenmp"], ["-fopenmp"], ["-march=native"], [])
    for no_float16 in ([], ["-DKS_NO_FLOAT16"]):
        for extra in extras:
            yield base + extra + no_float16


def _flavour_versions(flavour):
    """What else a build depends on: XLA's FFI header comes with jaxlib."""
    if flavour != "xla":
        return ""
    import jax
    import jaxlib

    return f"jax {jax.__version__} jaxlib {jaxlib.__version__}"


def _candidates(flavour, source):
    """(command, flags, cached path) per compiler and flag set, best first."""
    for compiler in _compilers():
        try:
            version = subprocess.run(
                [*compiler, "--version"], capture_output=True, text=True, timeout=60
            ).stdout
        except (OSError, subprocess.SubprocessError) as error:
            yield compiler, None, str(error)
            continue
        for flags in _flag_sets(flavour):
            parts = [source, " ".join(compiler), version, " ".join(flags)]
            parts += [_cpu_features(), _flavour_versions(flavour)]
            key = hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:20]
            yield compiler, flags, os.path.join(cache_dir(), key, f"swish_{flavour}.so")


def _build(flavour):
    """The path of the built library: a cached build for any of the flag
    sets (so that a later process never retries the ones that failed), else
    the first flag set that compiles."""
    with open(SOURCE, "rb") as f:
        source = f.read().decode()
    candidates = list(_candidates(flavour, source))
    for _, flags, path in candidates:
        if flags is not None and os.path.exists(path):
            return path
    errors = []
    for compiler, flags, path in candidates:
        if flags is None:
            errors.append(f"{' '.join(compiler)}: {path}")
            continue
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        # Written under a temporary name and renamed: another process
        # building the same key at the same time never loads half a file.
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".so", dir=folder)
        os.close(fd)
        try:
            done = subprocess.run(
                [*compiler, *flags, SOURCE, "-o", tmp], capture_output=True, text=True, timeout=300
            )
            if done.returncode == 0:
                os.chmod(tmp, 0o755)
                os.replace(tmp, path)
                return path
            errors.append(f"{' '.join(compiler + flags)}: {done.stderr.strip()[-400:]}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise RuntimeError("; ".join(errors) or "no C++ compiler found (set CXX)")


def library(flavour="plain"):
    """The loaded kernel library, built on first use, or None where building
    or loading failed (warned once per flavour)."""
    if flavour in _LIBRARIES:
        return _LIBRARIES[flavour]
    with _LOCK:
        if flavour not in _LIBRARIES:
            try:
                lib = ctypes.CDLL(_build(flavour))
                _declare(lib)
            except Exception as error:  # no compiler, a compile error, a bad cache
                lib = None
                FAILURES.append(f"{type(error).__name__}: {error}"[:600])
                warnings.warn(
                    "keras_swish: could not build the fused CPU kernel, so the op "
                    "uses its slower paths (set KERAS_SWISH_CPU_KERNEL=0 to skip "
                    f"the attempt). Error: {FAILURES[-1]}",
                    RuntimeWarning,
                    stacklevel=3,
                )
            _LIBRARIES[flavour] = lib
    return _LIBRARIES[flavour]


def _declare(lib):
    if not hasattr(lib, "ks_forward"):
        raise RuntimeError(f"{lib._name} is not the keras_swish CPU kernel")
    p, n = ctypes.c_void_p, ctypes.c_int64
    lib.ks_has_openmp.restype = ctypes.c_int
    lib.ks_forward.argtypes = [ctypes.c_int, p, p, p, n, n, ctypes.c_int]
    lib.ks_forward.restype = ctypes.c_int
    lib.ks_backward.argtypes = [ctypes.c_int, p, p, p, p, p, n, n, ctypes.c_int]
    lib.ks_backward.restype = ctypes.c_int
    lib.ks_has_float16.restype = ctypes.c_int
    # What the build takes (float16 where the CPU converts it: F16C, arm64).
    lib.dtypes = frozenset(name for name in DTYPE_CODES if name != "float16") | (
        {"float16"} if lib.ks_has_float16() else set()
    )


def _check(status):
    if status != 0:  # a dtype the build does not take: callers check lib.dtypes
        raise RuntimeError(f"keras_swish CPU kernel returned {status}")


def tiling(channels):
    """How many copies of a `channels`-wide β row make one kernel row."""
    return max(1, -(-MIN_WIDTH // channels))


def threads_for(lib, n, requested):
    if n < MIN_PARALLEL or not lib.ks_has_openmp():
        return 1
    return max(1, requested)


def channels(x_shape, view_shape):
    """β's channel count where β, lined up with x (`view_shape`), varies along
    the last axis only (1 for a scalar β); None for any other layout."""
    view_shape = tuple(view_shape)
    if any(n != 1 for n in view_shape[:-1]):
        return None
    if not view_shape or view_shape[-1] == 1:
        return 1
    return view_shape[-1] if x_shape and view_shape[-1] == x_shape[-1] else None


# JAX -------------------------------------------------------------------------

JAX_BACKWARD = "keras_swish_backward"  # the FFI target's name
_JAX_TARGETS = []  # the library once its target is registered, or None


def jax_supports(dtype, x_shape, view_shape):
    """Whether the kernel takes this input (at trace time): known shapes, a
    layout and a dtype the build takes, JAX's default backend the CPU. Builds
    and registers it on first use."""
    import numpy as np

    if not all(isinstance(n, int) for n in x_shape) or int(np.prod(x_shape)) == 0:
        return False
    if channels(x_shape, view_shape) is None:
        return False
    import jax

    if jax.default_backend() != "cpu":
        return False  # built for CPU only: a GPU or TPU user never pays for it
    lib = jax_library()
    return lib is not None and str(np.dtype(dtype)) in lib.dtypes


def jax_library():
    """The library built for JAX, its backward kernel registered as an XLA
    FFI target for the CPU platform (once); None where it could not be built."""
    if not _JAX_TARGETS:
        import jax

        lib = library("xla")
        with _LOCK:
            if not _JAX_TARGETS:
                if lib is not None:
                    target = jax.ffi.pycapsule(lib.KerasSwishBackward)
                    jax.ffi.register_ffi_target(JAX_BACKWARD, target, platform="cpu")
                _JAX_TARGETS.append(lib)
    return _JAX_TARGETS[0]


def _jax_threads(n):
    """All the CPUs this process may use, or OMP_NUM_THREADS where it is set
    (PyTorch's calls use `torch.get_num_threads()`)."""
    if n < MIN_PARALLEL:
        return 1
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        pass
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def jax_tiled_beta(beta, channels):
    import jax.numpy as jnp

    return jnp.tile(beta.astype(jnp.float32).reshape(-1), tiling(channels))


def jax_backward(x, tiled, dy):
    """dx, and the kernel row's float32 partial dβ sums (to be folded)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    call = jax.ffi.ffi_call(
        JAX_BACKWARD,
        (jax.ShapeDtypeStruct(x.shape, x.dtype), jax.ShapeDtypeStruct(tiled.shape, jnp.float32)),
        vmap_method="sequential",
    )
    return call(x, tiled, dy.astype(x.dtype), threads=np.int64(_jax_threads(x.size)))


# PyTorch ---------------------------------------------------------------------


def torch_channels(x, b):
    """See `channels`, for a tensor and the β lined up with it."""
    return channels(tuple(x.shape), tuple(b.shape))


def torch_supports(x, b):
    """Whether the kernel could take this input: CPU, a float dtype it may
    take (see `torch_dtype_taken`), a layout it takes."""
    return (
        x.device.type == "cpu"
        and b.device.type == "cpu"
        and torch_dtype_name(x) in DTYPE_CODES
        and x.numel() > 0
        and torch_channels(x, b) is not None
    )


def torch_dtype_name(x):
    return str(x.dtype).removeprefix("torch.")


def torch_dtype_taken(lib, x):
    return torch_dtype_name(x) in lib.dtypes


def _torch_tiled_beta(b, channels):
    import torch

    row = b.detach().reshape(-1).to(torch.float32).contiguous()
    reps = tiling(channels)
    return row if reps == 1 else row.repeat(reps)  # no copy of a wide β


def torch_forward(lib, x, b):
    """x·σ(βx) (contiguous, x's dtype)."""
    import torch

    channels = torch_channels(x, b)
    x = x.contiguous()
    tiled = _torch_tiled_beta(b, channels)
    y = torch.empty_like(x)
    n = x.numel()
    code = DTYPE_CODES[torch_dtype_name(x)]
    threads = threads_for(lib, n, torch.get_num_threads())
    width = tiled.numel()
    _check(lib.ks_forward(code, x.data_ptr(), tiled.data_ptr(), y.data_ptr(), n, width, threads))
    return y


def torch_backward(lib, x, b, dy):
    """dx, and dβ in float32 with β's lined-up shape."""
    import torch

    channels = torch_channels(x, b)
    x = x.contiguous()
    dy = dy.to(x.dtype).contiguous()
    tiled = _torch_tiled_beta(b, channels)
    dx = torch.empty_like(x)
    partial = torch.empty(tiled.numel(), dtype=torch.float32)
    n = x.numel()
    code = DTYPE_CODES[torch_dtype_name(x)]
    threads = threads_for(lib, n, torch.get_num_threads())
    status = lib.ks_backward(
        code,
        x.data_ptr(),
        tiled.data_ptr(),
        dy.data_ptr(),
        dx.data_ptr(),
        partial.data_ptr(),
        n,
        tiled.numel(),
        threads,
    )
    _check(status)
    dbeta = partial.reshape(-1, channels).sum(0)
    return dx, dbeta.reshape(b.shape) if channels > 1 else dbeta.sum().reshape(b.shape)


if __name__ == "__main__":  # python -m keras_swish._cpu_kernel: build and report
    for name in sys.argv[1:] or ["plain"]:
        print(name, library(name), FAILURES)
