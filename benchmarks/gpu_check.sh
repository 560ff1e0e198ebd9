#!/usr/bin/env bash
# The speed checks of issue 15 on an NVIDIA GPU: both benchmarks, every backend.
#
#   bash benchmarks/gpu_check.sh            # ~15-30 min: full sizes, 3 runs per mode
#   QUICK=1 bash benchmarks/gpu_check.sh    # ~5 min: smaller tensors, 1 run, 4 steps
#
# Run from anywhere, in the environment the project is installed in (the GPU
# builds of TensorFlow, JAX and PyTorch). Prints the conditions (GPU, driver,
# versions, what each backend sees, load) and then the same tables as on the
# CPU: `activation_speed.py` (float32 and bfloat16; TensorFlow, TensorFlow + XLA,
# JAX, PyTorch eager and torch.compile) and `train_step.py` (MobileNet α = 1,
# 128 px, batch 32; Keras's default jit_compile and jit_compile=True). Each
# benchmark also goes to a log next to the summary, under $OUT_DIR (default
# ./gpu_check-<date> in the directory it is run from). A backend that does not
# see the GPU is reported and the run goes on (its numbers are then CPU
# numbers, and say so).
set -u -o pipefail  # a benchmark's failure, not tee's success, sets the exit status

# The logs go under the directory the script is run from (or $OUT_DIR),
# whatever the script then changes to.
OUT_DIR=${OUT_DIR:-gpu_check-$(date +%Y%m%d-%H%M%S)}
case "$OUT_DIR" in /*) ;; *) OUT_DIR="$PWD/$OUT_DIR" ;; esac
cd "$(dirname "$0")/.." || exit 1
PYTHON=${PYTHON:-python}

if ! command -v nvidia-smi > /dev/null 2>&1; then
    echo "gpu_check: nvidia-smi not found: no NVIDIA GPU (or driver) on this machine." >&2
    echo "gpu_check: run the CPU benchmarks instead (benchmarks/README.md)." >&2
    exit 2
fi
if ! nvidia-smi -L > /dev/null 2>&1; then
    echo "gpu_check: nvidia-smi found no usable GPU:" >&2
    nvidia-smi -L >&2
    exit 2
fi
mkdir -p "$OUT_DIR"

if [ -n "${QUICK:-}" ]; then
    SPEED_ARGS=(--quick --runs 1)
    STEP_ARGS=(--quick)
else
    SPEED_ARGS=(--runs 3)
    STEP_ARGS=(--steps 20)
fi

{
    echo "== conditions ($(date -Is))"
    echo "host: $(hostname); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
    echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,utilization.gpu,memory.used,clocks.sm,clocks.max.sm \
        --format=csv
    echo "GPU processes before the run:"
    nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader || true
    "$PYTHON" - << 'EOF'
import importlib, os, subprocess, sys
print("python", sys.version.split()[0])
checks = {
    "tensorflow": "import tensorflow as tf; print(tf.__version__, tf.config.list_physical_devices('GPU'))",
    "jax": "import jax; print(jax.__version__, jax.devices())",
    "torch": "import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-', 'triton' if importlib.util.find_spec('triton') else 'no triton')",
    "keras": "import keras; print(keras.__version__)",
}
for name, code in checks.items():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", "import importlib.util; " + code],
                          capture_output=True, text=True, env=env)
    line = (done.stdout.strip().splitlines() or ["?"])[-1]
    print(f"{name}: {line if done.returncode == 0 else 'NOT AVAILABLE: ' + done.stderr.strip()[-300:]}")
EOF
} 2>&1 | tee "$OUT_DIR/conditions.txt"

status=0
echo
echo "== activation_speed.py ${SPEED_ARGS[*]} (float32, bfloat16; every mode)"
"$PYTHON" benchmarks/activation_speed.py "${SPEED_ARGS[@]}" --dtype float32,bfloat16 \
    --modes tensorflow,tensorflow-xla,jax,torch,torch-compile 2>&1 \
    | tee "$OUT_DIR/activation_speed.txt" || status=1

echo
echo "== train_step.py ${STEP_ARGS[*]} --jit-compile both (every backend)"
"$PYTHON" benchmarks/train_step.py "${STEP_ARGS[@]}" --jit-compile both 2>&1 \
    | tee "$OUT_DIR/train_step.txt" || status=1

echo
echo "== after: load $(cut -d' ' -f1-3 /proc/loadavg)"
nvidia-smi --query-gpu=name,utilization.gpu,memory.used,temperature.gpu --format=csv,noheader
echo "logs in $OUT_DIR/"
exit $status
