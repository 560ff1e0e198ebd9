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

#if defined(__AVX512F__) || defined(__F16C__)
#include <immintrin.h>
#endif

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

// 16 floats at a time in GCC/Clang vector extensions, which compile to the
// target's own vectors (AVX-512: one register; AVX2, SSE, NEON: 2 or 4).
// Written out because GCC's auto-vectorizer turns the selects below into
// masked code with spills, up to 1.3x slower than this (benchmarks/README.md).
// The formulas are templates over `float` and `Vec`, so a row's tail and
// the short row run the very same arithmetic one element at a time.
constexpr int64_t kLanes = 16;
typedef float Vec __attribute__((vector_size(64)));
typedef int32_t VecInt __attribute__((vector_size(64)));
typedef uint32_t VecBits __attribute__((vector_size(64)));
typedef uint16_t VecHalfBits __attribute__((vector_size(32)));

inline float as_float(int32_t i) { return bits_to_float(uint32_t(i)); }
inline Vec as_float(VecInt i) { return (Vec)i; }  // a vector cast keeps the bits
inline int32_t to_int(float f) { return int32_t(f); }
inline VecInt to_int(Vec f) { return __builtin_convertvector(f, VecInt); }
template <typename V>
inline V splat(float v) {
  return V{} + v;
}

// `a < b ? b : a` (a NaN stays NaN) and −|a|: one instruction each where the
// target has one (GCC writes a compare and a blend for the select).
inline float at_least(float a, float b) { return a < b ? b : a; }
inline float at_most(float a, float b) { return a > b ? b : a; }
inline float minus_abs(float a) { return bits_to_float(float_to_bits(a) | 0x80000000u); }
inline Vec minus_abs(Vec a) { return (Vec)((VecBits)a | 0x80000000u); }
#if defined(__AVX512F__)
inline Vec at_least(Vec a, Vec b) {  // maxps(b, a): b where b > a, else a
  return (Vec)_mm512_max_ps((__m512)b, (__m512)a);
}
inline Vec at_most(Vec a, Vec b) {
  return (Vec)_mm512_min_ps((__m512)b, (__m512)a);
}
#else
inline Vec at_least(Vec a, Vec b) { return a < b ? b : a; }
inline Vec at_most(Vec a, Vec b) { return a > b ? b : a; }
#endif

struct BFloat16 {
  uint16_t bits;
};

inline float load(const float* p, int64_t i) { return p[i]; }
inline float load(const BFloat16* p, int64_t i) { return bits_to_float(uint32_t(p[i].bits) << 16); }
inline void store(float* p, int64_t i, float v) { p[i] = v; }
// float32 bits to bfloat16 bits (in the low half), one value or 16: round to
// nearest even, as PyTorch, JAX and TensorFlow do; NaN stays NaN.
template <typename U>
inline U bfloat16_bits(U u) {
  U rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  U quiet_nan = (u >> 16) | 0x40u;
  return (u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded;
}

inline void store(BFloat16* p, int64_t i, float v) {
  p[i].bits = uint16_t(bfloat16_bits(float_to_bits(v)));
}

inline Vec load_vec(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store_vec(float* p, Vec v) { std::memcpy(p, &v, sizeof v); }
inline Vec load_vec(const BFloat16* p) {
  VecHalfBits h;
  std::memcpy(&h, p, sizeof h);
  VecBits u = __builtin_convertvector(h, VecBits) << 16;
  return (Vec)u;
}
inline void store_vec(BFloat16* p, Vec v) {
#if defined(__AVX512BF16__) && defined(__AVX512DQ__)
  // One vcvtneps2bf16 (round to nearest even, NaN quieted as above) where
  // the CPU has it: about 10 % off the bfloat16 backward pass and 15 % off
  // the forward (benchmarks/README.md). The instruction flushes subnormal
  // inputs to ±0 whatever MXCSR says, so a vector with a subnormal lane (one
  // vfpclassps test, almost never taken) takes the exact path below: the
  // same bits as the scalar tail and as CPUs without the instruction.
  if (_mm512_fpclass_ps_mask((__m512)v, 0x20) == 0) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                        (__m256i)_mm512_cvtneps_pbh((__m512)v));
    return;
  }
#endif
  VecHalfBits h = __builtin_convertvector(bfloat16_bits((VecBits)v), VecHalfBits);
  std::memcpy(p, &h, sizeof h);
}

// float16 where the CPU converts it: F16C on x86-64 (GCC and Clang would
// convert _Float16 there through library calls, 10-15x slower than ATen),
// _Float16 elsewhere (arm64 converts in hardware). Else no float16: the op
// takes its other paths for it. -DKS_NO_FLOAT16 for a compiler that
// announces _Float16 that its C++ cannot use.
#if !defined(KS_NO_FLOAT16) && defined(__F16C__)
#define KS_HAVE_FLOAT16 1
struct Half {
  uint16_t bits;
};
inline float load(const Half* p, int64_t i) { return _cvtsh_ss(p[i].bits); }
inline void store(Half* p, int64_t i, float v) {
  p[i].bits = _cvtss_sh(v, _MM_FROUND_TO_NEAREST_INT);
}
inline Vec load_vec(const Half* p) {
  __m256 half[2] = {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
                    _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)))};
  Vec v;
  std::memcpy(&v, half, sizeof v);
  return v;
}
inline void store_vec(Half* p, Vec v) {
  __m256 half[2];
  std::memcpy(half, &v, sizeof v);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                   _mm256_cvtps_ph(half[0], _MM_FROUND_TO_NEAREST_INT));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p + 8),
                   _mm256_cvtps_ph(half[1], _MM_FROUND_TO_NEAREST_INT));
}
#elif !defined(KS_NO_FLOAT16) && defined(__FLT16_MAX__) && !defined(__x86_64__) && \
    !defined(__i386__)
#define KS_HAVE_FLOAT16 1
typedef _Float16 Half;
typedef _Float16 VecHalf __attribute__((vector_size(32)));
inline float load(const Half* p, int64_t i) { return float(p[i]); }
inline void store(Half* p, int64_t i, float v) { p[i] = Half(v); }
inline Vec load_vec(const Half* p) {
  VecHalf h;
  std::memcpy(&h, p, sizeof h);
  return __builtin_convertvector(h, Vec);
}
inline void store_vec(Half* p, Vec v) {
  VecHalf h = __builtin_convertvector(v, VecHalf);
  std::memcpy(p, &h, sizeof h);
}
#endif

// p·2^k for an integer-valued k ≥ −126: one vscalefps on AVX-512 (up to
// 11 % off the backward pass), else a multiply by 2^k built from its exponent
// bits (the same result, bit for bit).
template <typename V>
inline V times_two_to(V p, V k) {
  return p * as_float((to_int(k) + 127) << 23);
}
#if defined(__AVX512F__)
inline Vec times_two_to(Vec p, Vec k) { return (Vec)_mm512_scalef_ps((__m512)p, (__m512)k); }
#endif

// exp(a) for a ≤ 0, inlined so that the loops below vectorize whole (a call
// to a vector exp would spill every live register, as Inductor's do): Cody–
// Waite reduction by ln 2, Cephes' degree-6 polynomial (about 1 ulp), times
// 2^k; 0 below −87 (where expf is subnormal or 0).
template <typename V>
inline V exp_nonpositive(V a) {
  const V low = splat<V>(-87.0f);
  V c = at_least(a, low);
  V k = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round
  V r = c - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  V p = splat<V>(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return a < low ? splat<V>(0.0f) : times_two_to(p, k);
}

constexpr float kFloatMax = 3.402823466e38f;

template <typename V>
inline V swish(V x, V b) {
  V z = b * x;
  V e = exp_nonpositive(minus_abs(z));
  V r = 1.0f / (1.0f + e);
  return x * (z >= 0 ? r : e * r);
}

// dx, and the dβ term dy·x²·σ(βx)(1 − σ(βx)) in `term`.
template <typename V>
inline V swish_grad(V x, V b, V g, V& term) {
  V z = b * x;
  z = at_most(at_least(z, splat<V>(-kFloatMax)), splat<V>(kFloatMax));
  V e = exp_nonpositive(minus_abs(z));
  V r = 1.0f / (1.0f + e);
  V slope = e * r * r;  // σ(1 − σ)
  term = g * ((x * slope) * x);  // x·σ' first: 0, not inf·0, for huge x
  return g * ((z >= 0 ? r : e * r) + z * slope);
}

template <typename T>
void forward_rows(const T* x, const float* b, T* y, int64_t rows, int64_t width) {
  const int64_t whole = width - width % kLanes;
  for (int64_t row = 0; row < rows; ++row) {
    const T* xr = x + row * width;
    T* yr = y + row * width;
    int64_t j = 0;
    for (; j < whole; j += kLanes) store_vec(yr + j, swish(load_vec(xr + j), load_vec(b + j)));
    for (; j < width; ++j) store(yr, j, swish(load(xr, j), b[j]));
  }
}

// dx for `rows` rows, and their dβ terms added to acc[0 .. width).
template <typename T>
void backward_rows(const T* x, const float* b, const T* dy, T* dx, float* acc, int64_t rows,
                   int64_t width) {
  const int64_t whole = width - width % kLanes;
  for (int64_t row = 0; row < rows; ++row) {
    const T* xr = x + row * width;
    const T* gr = dy + row * width;
    T* dr = dx + row * width;
    int64_t j = 0;
    for (; j < whole; j += kLanes) {
      Vec term;
      store_vec(dr + j, swish_grad(load_vec(xr + j), load_vec(b + j), load_vec(gr + j), term));
      store_vec(acc + j, load_vec(acc + j) + term);
    }
    for (; j < width; ++j) {
      float term;
      store(dr, j, swish_grad(load(xr, j), b[j], load(gr, j), term));
      acc[j] += term;
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
// (where the CPU converts it, see Half: ks_has_float16). They return 1 for a
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
    case 2: forward<Half>(x, b, y, n, width, threads); return 0;
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
    case 2: backward<Half>(x, b, dy, dx, dbeta, n, width, threads); return 0;
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
