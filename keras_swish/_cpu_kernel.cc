// Swish with a trainable β, x·σ(βx), forward and backward in one pass each
// over x (and dy) on a CPU. Built by keras_swish/_cpu_kernel.py on first use
// (never at install time) and loaded with ctypes (PyTorch) or as an XLA FFI
// target (JAX, built with -DKS_XLA_FFI). See that module for why.
//
// Layout: x is `n` contiguous elements seen as rows of `width` elements, and
// `b` holds the `width` β values of one row (float32): one β per channel on
// the last axis tiled to `width` (a multiple of the channel count), or one
// scalar β repeated. The last `n % width` elements are one short row.
// The backward pass returns dx and `width` partial sums of dβ (the caller
// folds the tiles): dβ[j] = Σ_rows dy·x²·σ(βx)(1 − σ(βx)).
//
// Numerics match keras_swish.ops on every backend: 16-bit inputs computed in
// float32 and rounded once; e = exp(−|βx|) gives σ and σ(1 − σ) exactly in
// both tails; βx is clipped to the finite range, so no inf·0.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

struct BFloat16 {
  uint16_t bits;
};

inline float load(const float* p, int64_t i) { return p[i]; }
inline float load(const BFloat16* p, int64_t i) { return bits_to_float(uint32_t(p[i].bits) << 16); }
#ifdef __FLT16_MAX__  // _Float16: GCC >= 12 and Clang on x86-64 and arm64
#define KS_HAVE_FLOAT16 1
inline float load(const _Float16* p, int64_t i) { return float(p[i]); }
inline void store(_Float16* p, int64_t i, float v) { p[i] = _Float16(v); }
#endif

inline void store(float* p, int64_t i, float v) { p[i] = v; }
inline void store(BFloat16* p, int64_t i, float v) {
  // Round to nearest even, as PyTorch, JAX and TensorFlow do; NaN stays NaN.
  uint32_t u = float_to_bits(v);
  uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  uint32_t quiet_nan = (u >> 16) | 0x40u;
  p[i].bits = uint16_t((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
}

// exp(a) for a ≤ 0, inlined so that the loops below vectorize whole (a call
// to a vector exp would spill every live register, as Inductor's do): Cody–
// Waite reduction by ln 2, Cephes' degree-6 polynomial (about 1 ulp), 2^k
// from the exponent bits; 0 below −87 (where expf is subnormal or 0).
inline float exp_nonpositive(float a) {
  const float low = -87.0f;
  float c = a < low ? low : a;
  float k = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round
  float r = c - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  float scale = bits_to_float(uint32_t(int32_t(k) + 127) << 23);
  return a < low ? 0.0f : p * scale;
}

constexpr float kFloatMax = 3.402823466e38f;

template <typename T>
void forward_rows(const T* x, const float* b, T* y, int64_t rows, int64_t width) {
  for (int64_t row = 0; row < rows; ++row) {
    const T* xr = x + row * width;
    T* yr = y + row * width;
#pragma GCC ivdep
    for (int64_t j = 0; j < width; ++j) {
      float xv = load(xr, j);
      float z = b[j] * xv;
      float e = exp_nonpositive(z < 0 ? z : -z);
      float r = 1.0f / (1.0f + e);
      store(yr, j, xv * (z >= 0 ? r : e * r));
    }
  }
}

// dx for `rows` rows, and their dβ terms added to acc[0 .. width).
template <typename T>
void backward_rows(const T* x, const float* b, const T* dy, T* dx, float* acc, int64_t rows,
                   int64_t width) {
  for (int64_t row = 0; row < rows; ++row) {
    const T* xr = x + row * width;
    const T* gr = dy + row * width;
    T* dr = dx + row * width;
#pragma GCC ivdep
    for (int64_t j = 0; j < width; ++j) {
      float xv = load(xr, j);
      float g = load(gr, j);
      float z = b[j] * xv;
      z = z > kFloatMax ? kFloatMax : (z < -kFloatMax ? -kFloatMax : z);
      float e = exp_nonpositive(z < 0 ? z : -z);
      float r = 1.0f / (1.0f + e);
      float slope = e * r * r;  // σ(1 − σ)
      store(dr, j, g * ((z >= 0 ? r : e * r) + z * slope));
      acc[j] += g * ((xv * slope) * xv);  // x·σ' first: 0, not inf·0, for huge x
    }
  }
}

// Work is handed out in blocks of rows: about 32K elements (at most 256
// rows, whose dβ terms are summed in float32; blocks are added in float64).
inline int64_t block_rows(int64_t width) {
  return std::max<int64_t>(1, std::min<int64_t>(256, (int64_t(1) << 15) / width));
}

inline int thread_count(int requested, int64_t blocks) {
  return int(std::max<int64_t>(1, std::min<int64_t>(requested, blocks)));
}

template <typename T>
void forward(const void* x_, const float* b, void* y_, int64_t n, int64_t width, int threads) {
  const T* x = static_cast<const T*>(x_);
  T* y = static_cast<T*>(y_);
  int64_t rows = n / width;
  int64_t per_block = block_rows(width);
  int64_t blocks = (rows + per_block - 1) / per_block;
  threads = thread_count(threads, blocks);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t block = 0; block < blocks; ++block) {
    int64_t first = block * per_block;
    int64_t count = std::min(per_block, rows - first);
    forward_rows(x + first * width, b, y + first * width, count, width);
  }
  int64_t rest = n - rows * width;
  if (rest) forward_rows(x + rows * width, b, y + rows * width, 1, rest);
}

template <typename T>
void backward(const void* x_, const float* b, const void* dy_, void* dx_, float* dbeta, int64_t n,
              int64_t width, int threads) {
  const T* x = static_cast<const T*>(x_);
  const T* dy = static_cast<const T*>(dy_);
  T* dx = static_cast<T*>(dx_);
  int64_t rows = n / width;
  int64_t per_block = block_rows(width);
  int64_t blocks = (rows + per_block - 1) / per_block;
  threads = thread_count(threads, blocks);
  // One float32 row of sums per block, added in block order in float64: the
  // same dβ whichever thread ran which block and however many threads ran.
  // (Blocks handed out dynamically were measured no faster on a busy VM.)
  std::vector<float> partial(size_t(blocks + 1) * width, 0.0f);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t block = 0; block < blocks; ++block) {
    int64_t first = block * per_block;
    int64_t count = std::min(per_block, rows - first);
    backward_rows(x + first * width, b, dy + first * width, dx + first * width,
                  partial.data() + size_t(block) * width, count, width);
  }
  int64_t rest = n - rows * width;
  if (rest) {
    backward_rows(x + rows * width, b, dy + rows * width, dx + rows * width,
                  partial.data() + size_t(blocks) * width, 1, rest);
  }
  std::vector<double> sums(width, 0.0);
  for (int64_t block = 0; block <= blocks; ++block) {
    const float* row = partial.data() + size_t(block) * width;
    for (int64_t j = 0; j < width; ++j) sums[j] += row[j];
  }
  for (int64_t j = 0; j < width; ++j) dbeta[j] = float(sums[j]);
}

}  // namespace

// Plain C entry points (ctypes). dtype: 0 float32, 1 bfloat16, 2 float16
// (where the compiler has _Float16: ks_has_float16). They return 1 for a
// dtype they do not take.
extern "C" {

int ks_has_float16() {
#ifdef KS_HAVE_FLOAT16
  return 1;
#else
  return 0;
#endif
}

int ks_has_openmp() {
#ifdef _OPENMP
  return 1;
#else
  return 0;
#endif
}

int ks_forward(int dtype, const void* x, const float* b, void* y, int64_t n, int64_t width,
               int threads) {
  switch (dtype) {
    case 0: forward<float>(x, b, y, n, width, threads); return 0;
    case 1: forward<BFloat16>(x, b, y, n, width, threads); return 0;
#ifdef KS_HAVE_FLOAT16
    case 2: forward<_Float16>(x, b, y, n, width, threads); return 0;
#endif
  }
  return 1;
}

int ks_backward(int dtype, const void* x, const float* b, const void* dy, void* dx, float* dbeta,
                int64_t n, int64_t width, int threads) {
  switch (dtype) {
    case 0: backward<float>(x, b, dy, dx, dbeta, n, width, threads); return 0;
    case 1: backward<BFloat16>(x, b, dy, dx, dbeta, n, width, threads); return 0;
#ifdef KS_HAVE_FLOAT16
    case 2: backward<_Float16>(x, b, dy, dx, dbeta, n, width, threads); return 0;
#endif
  }
  return 1;
}

}  // extern "C"

#ifdef KS_XLA_FFI
// XLA FFI handler (JAX): the backward kernel as a custom call on the CPU
// platform (JAX's forward stays XLA's own loop, see keras_swish/ops.py).
// x and dy of one of the three dtypes, β tiled to one row (float32);
// `threads` as an attribute (XLA runs a custom call on one of its threads;
// the kernel's own OpenMP threads do the work).
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

int dtype_code(ffi::DataType type) {
  switch (type) {
    case ffi::DataType::F32: return 0;
    case ffi::DataType::BF16: return 1;
#ifdef KS_HAVE_FLOAT16
    case ffi::DataType::F16: return 2;
#endif
    default: return -1;
  }
}

ffi::Error BackwardImpl(ffi::AnyBuffer x, ffi::Buffer<ffi::F32> b, ffi::AnyBuffer dy,
                        ffi::Result<ffi::AnyBuffer> dx, ffi::Result<ffi::Buffer<ffi::F32>> dbeta,
                        int64_t threads) {
  int code = dtype_code(x.element_type());
  if (code < 0 || dy.element_type() != x.element_type())
    return ffi::Error::InvalidArgument("keras_swish kernel: x and dy must share a float dtype");
  int64_t n = int64_t(x.element_count());
  int64_t width = int64_t(b.element_count());
  if (n) {
    ks_backward(code, x.untyped_data(), b.typed_data(), dy.untyped_data(), dx->untyped_data(),
                dbeta->typed_data(), n, width, int(threads));
  } else {
    std::fill(dbeta->typed_data(), dbeta->typed_data() + width, 0.0f);
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(KerasSwishBackward, BackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("threads"));
#endif  // KS_XLA_FFI
