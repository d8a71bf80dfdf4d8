// Training-mode BatchNorm2d + (residual add) + ReLU on channels_last CPU tensors, forward and backward, in
// fewer passes over memory than the separate ATen ops (see reslab/models/bn_act.py, which builds this file on
// first use and falls back to PyTorch's own ops wherever it does not apply).
//
// Layout: a channels_last (N, C, H, W) tensor is an (M = N*H*W, C) row-major matrix, so a channel is a column
// and every loop below runs over contiguous channels, which the compiler vectorises.
//
// Determinism: rows are cut into chunks whose size depends on C alone; each chunk's partial sums (in double)
// are combined in chunk order, so the result does not depend on the number of threads.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

using bf16 = uint16_t;  // raw bfloat16 bits

inline float to_float(float v) { return v; }
inline float to_float(bf16 v) {
  uint32_t bits = uint32_t(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

template <typename T> inline T from_float(float v);
template <> inline float from_float<float>(float v) { return v; }
template <> inline bf16 from_float<bf16>(float v) {
  // Round to nearest even, NaN to the canonical quiet NaN: the same rule as c10::BFloat16.
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  bool nan = (bits & 0x7FFFFFFFu) > 0x7F800000u;
  return nan ? bf16(0x7FC0) : bf16(rounded);
}

int64_t rows_per_chunk(int64_t C) { return std::max<int64_t>(1, 16384 / C); }

// Rows are visited in spans of G = ceil(128 / C) whole rows, W = G * C contiguous elements, so that the inner
// loops are long enough for full vectors when C is small (16 channels of bf16 are half a 512-bit vector). The
// per-channel coefficients are tiled to W; element j of a span belongs to channel j % C. Rows left over at a
// chunk's end are visited one at a time (length C, the first C of each tiled array).
int64_t span_width(int64_t C) { return C * std::max<int64_t>(1, (128 + C - 1) / C); }

// A per-channel vector repeated to W elements.
template <typename V>
std::vector<V> tiled(const std::vector<V>& per_channel, int64_t W) {
  const int64_t C = int64_t(per_channel.size());
  std::vector<V> out(W);
  for (int64_t j = 0; j < W; ++j) out[j] = per_channel[j % C];
  return out;
}

// body(first_element, n) for the rows [r0, r1), in spans of W elements and then single rows.
template <typename Body>
void each_span(int64_t r0, int64_t r1, int64_t C, const Body& body) {
  const int64_t G = span_width(C) / C;
  int64_t r = r0;
  for (; r + G <= r1; r += G) body(r * C, G * C);
  for (; r < r1; ++r) body(r * C, C);
}

// Per-chunk partial sums for every channel, combined in chunk order. `body(first_element, n, a, b)` adds a
// span's contributions into the tiled accumulators a[W] and b[W], folded into a[C] and b[C] at the end.
template <typename Body>
void column_sums(int64_t M, int64_t C, std::vector<double>& a, std::vector<double>& b, const Body& body) {
  const int64_t rpc = rows_per_chunk(C), W = span_width(C);
  const int64_t chunks = (M + rpc - 1) / rpc;
  std::vector<double> part(chunks * 2 * W, 0.0);
  at::parallel_for(0, chunks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t k = lo; k < hi; ++k) {
      double* pa = part.data() + k * 2 * W;
      each_span(k * rpc, std::min(M, (k + 1) * rpc), C, [&](int64_t e, int64_t n) { body(e, n, pa, pa + W); });
    }
  });
  a.assign(C, 0.0);
  b.assign(C, 0.0);
  for (int64_t k = 0; k < chunks; ++k) {
    const double* pa = part.data() + k * 2 * W;
    for (int64_t j = 0; j < W; ++j) { a[j % C] += pa[j]; b[j % C] += pa[W + j]; }
  }
}

template <typename Body>
void for_spans(int64_t M, int64_t C, const Body& body) {
  const int64_t rpc = rows_per_chunk(C);
  const int64_t chunks = (M + rpc - 1) / rpc;
  at::parallel_for(0, chunks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t k = lo; k < hi; ++k) each_span(k * rpc, std::min(M, (k + 1) * rpc), C, body);
  });
}

// Forward: batch statistics (one pass, shifted by the first row, accumulated in double), then
// y = relu(x * scale + shift [+ skip]) in one more pass. Writes mean, invstd and the running statistics.
template <typename T>
void forward_impl(const T* x, const T* skip, T* y, int64_t M, int64_t C, const float* w, const float* b,
                  double eps, double momentum, float* mean_out, float* invstd_out, float* run_mean,
                  float* run_var) {
  const int64_t W = span_width(C);
  std::vector<double> first_row(C);
  for (int64_t c = 0; c < C; ++c) first_row[c] = to_float(x[c]);
  const std::vector<double> shift0 = tiled(first_row, W);
  const double* s0 = shift0.data();
  std::vector<double> s1, s2;
  column_sums(M, C, s1, s2, [&](int64_t e, int64_t n, double* a, double* q) {
    const T* xs = x + e;
    for (int64_t j = 0; j < n; ++j) {
      double d = double(to_float(xs[j])) - s0[j];
      a[j] += d;
      q[j] += d * d;
    }
  });
  std::vector<float> scale(C), shift(C);
  for (int64_t c = 0; c < C; ++c) {
    double m1 = s1[c] / M;
    double var = std::max(0.0, s2[c] / M - m1 * m1);
    double mean = s0[c] + m1;
    double invstd = 1.0 / std::sqrt(var + eps);
    mean_out[c] = float(mean);
    invstd_out[c] = float(invstd);
    scale[c] = float(w[c] * invstd);
    shift[c] = float(b[c] - mean * w[c] * invstd);
    run_mean[c] = float((1.0 - momentum) * run_mean[c] + momentum * mean);
    run_var[c] = float((1.0 - momentum) * run_var[c] + momentum * var * M / (M - 1));
  }
  const std::vector<float> sct = tiled(scale, W), sht = tiled(shift, W);
  const float* sc = sct.data();
  const float* sh = sht.data();
  for_spans(M, C, [&](int64_t e, int64_t n) {
    const T* xs = x + e;
    T* ys = y + e;
    if (skip) {
      const T* ss = skip + e;
      for (int64_t j = 0; j < n; ++j) {
        float z = to_float(xs[j]) * sc[j] + sh[j] + to_float(ss[j]);
        ys[j] = from_float<T>(z < 0.f ? 0.f : z);
      }
    } else {
      for (int64_t j = 0; j < n; ++j) {
        float z = to_float(xs[j]) * sc[j] + sh[j];
        ys[j] = from_float<T>(z < 0.f ? 0.f : z);
      }
    }
  });
}

// Backward: dz = dy where y > 0; one pass for the per-channel sums of dz and dz * (x - mean) (writing the
// skip's gradient, which is dz, on the way), one more for dx.
template <typename T>
void backward_impl(const T* dy, const T* x, const T* y, T* dx, T* dskip, int64_t M, int64_t C, const float* w,
                   const float* mean, const float* invstd, float* dw, float* db) {
  const int64_t W = span_width(C);
  const std::vector<double> mdt = tiled(std::vector<double>(mean, mean + C), W);
  const double* md = mdt.data();
  std::vector<double> sdz, sdzx;
  column_sums(M, C, sdz, sdzx, [&](int64_t e, int64_t n, double* a, double* q) {
    thread_local std::vector<float> dz;  // one buffer per thread, grown to the longest span seen
    if (int64_t(dz.size()) < n) dz.resize(n);
    float* d = dz.data();
    const T* dys = dy + e;
    const T* xs = x + e;
    const T* ys = y + e;
    // Every load is unconditional and the select stays in float, so the compiler turns it into a vector
    // blend; the double sums run in a loop of their own.
    for (int64_t j = 0; j < n; ++j) d[j] = to_float(ys[j]) > 0.f ? to_float(dys[j]) : 0.f;
    for (int64_t j = 0; j < n; ++j) {
      a[j] += d[j];
      q[j] += double(d[j]) * (double(to_float(xs[j])) - md[j]);
    }
    if (dskip) {
      T* dss = dskip + e;
      for (int64_t j = 0; j < n; ++j) dss[j] = to_float(ys[j]) > 0.f ? dys[j] : T(0);
    }
  });
  std::vector<float> k1(C), k2(C), k3(C);
  for (int64_t c = 0; c < C; ++c) {
    double is = invstd[c];
    db[c] = float(sdz[c]);
    dw[c] = float(sdzx[c] * is);
    double a = w[c] * is;                              // d out / d z
    double bq = -a * is * is * sdzx[c] / M;            // coefficient of x
    k1[c] = float(a);
    k2[c] = float(bq);
    k3[c] = float(-a * sdz[c] / M - bq * mean[c]);
  }
  if (!dx) return;
  const std::vector<float> t1 = tiled(k1, W), t2 = tiled(k2, W), t3 = tiled(k3, W);
  const float* a1 = t1.data();
  const float* a2 = t2.data();
  const float* a3 = t3.data();
  for_spans(M, C, [&](int64_t e, int64_t n) {
    const T* dys = dy + e;
    const T* xs = x + e;
    const T* ys = y + e;
    T* dxs = dx + e;
    for (int64_t j = 0; j < n; ++j) {
      float dz = to_float(ys[j]) > 0.f ? to_float(dys[j]) : 0.f;
      dxs[j] = from_float<T>(a1[j] * dz + a2[j] * to_float(xs[j]) + a3[j]);
    }
  });
}

void check_input(const at::Tensor& t, const char* name, const at::Tensor& like) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be on the CPU");
  TORCH_CHECK(t.dim() == 4 && t.sizes() == like.sizes(), name, " must have the shape of x");
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), name, " must have the dtype of x");
  TORCH_CHECK(t.is_contiguous(at::MemoryFormat::ChannelsLast), name, " must be channels_last");
}

void check_channel(const at::Tensor& t, const char* name, int64_t C) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous() && t.numel() == C,
              name, " must be a contiguous float32 CPU tensor of C elements");
}

template <typename T> T* ptr(const at::Tensor& t) { return reinterpret_cast<T*>(t.data_ptr()); }

// Returns (y, mean, invstd); updates running_mean and running_var in place.
std::vector<at::Tensor> forward(const at::Tensor& x, const c10::optional<at::Tensor>& skip, const at::Tensor& w,
                                const at::Tensor& b, const at::Tensor& running_mean, const at::Tensor& running_var,
                                double momentum, double eps) {
  TORCH_CHECK(x.dim() == 4, "x must be 4-D");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16, "x must be float32 or bfloat16");
  check_input(x, "x", x);
  const int64_t C = x.size(1), M = x.numel() / C;
  TORCH_CHECK(M > 1, "expected more than 1 value per channel when training");
  for (auto* p : {&w, &b, &running_mean, &running_var}) check_channel(*p, "a BatchNorm parameter or buffer", C);
  if (skip) check_input(*skip, "skip", x);
  at::Tensor y = at::empty_like(x, at::MemoryFormat::ChannelsLast);
  at::Tensor mean = at::empty({C}, w.options()), invstd = at::empty({C}, w.options());
  auto run = [&](auto tag) {
    using T = decltype(tag);
    forward_impl<T>(ptr<T>(x), skip ? ptr<T>(*skip) : nullptr, ptr<T>(y), M, C, ptr<float>(w), ptr<float>(b),
                    eps, momentum, ptr<float>(mean), ptr<float>(invstd), ptr<float>(running_mean),
                    ptr<float>(running_var));
  };
  if (x.scalar_type() == at::kFloat) run(float{}); else run(bf16{});
  return {y, mean, invstd};
}

// Returns (dx, dw, db, dskip); dx is undefined when not wanted, dskip when there was no skip.
std::vector<at::Tensor> backward(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& y,
                                 const at::Tensor& w, const at::Tensor& mean, const at::Tensor& invstd,
                                 bool want_dx, bool want_dskip) {
  check_input(dy, "dy", x);
  check_input(y, "y", x);
  const int64_t C = x.size(1), M = x.numel() / C;
  for (auto* p : {&w, &mean, &invstd}) check_channel(*p, "a per-channel tensor", C);
  at::Tensor dx = want_dx ? at::empty_like(x, at::MemoryFormat::ChannelsLast) : at::Tensor();
  at::Tensor dskip = want_dskip ? at::empty_like(x, at::MemoryFormat::ChannelsLast) : at::Tensor();
  at::Tensor dw = at::empty({C}, w.options()), db = at::empty({C}, w.options());
  auto run = [&](auto tag) {
    using T = decltype(tag);
    backward_impl<T>(ptr<T>(dy), ptr<T>(x), ptr<T>(y), want_dx ? ptr<T>(dx) : nullptr,
                     want_dskip ? ptr<T>(dskip) : nullptr, M, C, ptr<float>(w), ptr<float>(mean),
                     ptr<float>(invstd), ptr<float>(dw), ptr<float>(db));
  };
  if (x.scalar_type() == at::kFloat) run(float{}); else run(bf16{});
  return {dx, dw, db, dskip};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "BatchNorm2d (training) + optional add + ReLU, channels_last");
  m.def("backward", &backward, "its backward");
}
