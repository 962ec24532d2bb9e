// Fused CPU kernels for TeLU and PWLU: each pass is one walk over the tensor instead of a dozen eager ops.
// Built once per machine by torch.utils.cpp_extension (activations/_native.py), with the vector width
// torch itself uses (at::vec::Vectorized, CPU_CAPABILITY set by the loader). float32 and float64 only;
// everything else takes the eager path in Python.
#include <ATen/Dispatch.h>
#include <ATen/Functions.h>
#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <algorithm>
#include <utility>
#include <cmath>
#include <limits>
#include <vector>

using at::Tensor;
using at::vec::Vectorized;

namespace {

constexpr int64_t kGrain = 32768;  // elements: smaller tensors run on the calling thread alone
constexpr double kExpClamp = 10.0;  // tanh(e^x) == 1 in every float type from here on (see _telu.py)

// ------------------------------------------------------------------------------------------- TeLU

// TeLU(x) = x·tanh(e^x); x is clamped to the finite range below so that −inf gives the limit 0, not −inf·0.
template <typename T>
void telu_forward_span(const T* x, T* y, int64_t n) {
  using V = Vectorized<T>;
  const V hi{T(kExpClamp)}, lo{-std::numeric_limits<T>::max()};
  for (int64_t i = 0; i < n; i += V::size()) {
    const int64_t k = std::min<int64_t>(V::size(), n - i);
    const V xv = V::loadu(x + i, k);
    const V t = at::vec::minimum(xv, hi).exp().tanh();
    (at::vec::maximum(xv, lo) * t).store(y + i, k);
  }
}

// TeLU'(x)·g = g·(tanh(e^x) + x·e^x·sech²(e^x)), from two exponentials, no tanh: with m = expm1(−2e^x),
// tanh(e^x) = −m/(2 + m) and e^x·sech²(e^x) = 4·e^x·(1 + m)/(2 + m)² — no cancellation anywhere (1 − tanh²
// would lose everything near 1, (1 − u)/(1 + u) with u = e^(−2e^x) near x → −∞). x is clamped where tanh(e^x)
// rounds to 1 and the second term to 0 (3.77 in float32, 5.87 in float64), and −inf to the finite range,
// where the term is 0 too; the bracket is formed before x multiplies it (4·x would overflow at −max).
template <typename T>
void telu_backward_span(const T* g, const T* x, T* out, int64_t n, T bracket_clamp) {
  using V = Vectorized<T>;
  const V bc{bracket_clamp}, lo{-std::numeric_limits<T>::max()}, one{T(1)}, two{T(2)}, four{T(4)}, m2{T(-2)};
  for (int64_t i = 0; i < n; i += V::size()) {
    const int64_t k = std::min<int64_t>(V::size(), n - i);
    const V xc = at::vec::minimum(at::vec::maximum(V::loadu(x + i, k), lo), bc);
    const V e = xc.exp();
    const V m = (e * m2).expm1();
    const V r = (two + m).reciprocal();
    const V slope = r * (xc * (four * e * (one + m) * r) - m);
    (V::loadu(g + i, k) * slope).store(out + i, k);
  }
}

template <typename T>
T bracket_clamp_for() {
  return T(std::log(-std::log(double(std::numeric_limits<T>::min())) / 2) - 0.01);
}

void check_float(const Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, ": a CPU tensor is needed");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name, ": float32 or float64 is needed");
}

// The kernels walk a tensor's memory as one flat run: any dense layout (contiguous, channels-last) as it is.
Tensor dense(const Tensor& t) { return t.is_non_overlapping_and_dense() ? t : t.contiguous(); }

// t in layout's sizes, dtype and strides (a copy unless it already is), e.g. the expanded gradient of a sum().
Tensor in_layout_of(const Tensor& t, const Tensor& layout) {
  if (t.scalar_type() == layout.scalar_type() && t.sizes() == layout.sizes() && t.strides() == layout.strides()) return t;
  Tensor out = at::empty_like(layout);
  out.copy_(t);
  return out;
}

Tensor telu_forward(const Tensor& x_in) {
  check_float(x_in, "telu_forward");
  const Tensor x = dense(x_in);
  Tensor y = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "telu_forward", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.data_ptr<scalar_t>();
    at::parallel_for(0, x.numel(), kGrain, [&](int64_t b, int64_t e) { telu_forward_span(xp + b, yp + b, e - b); });
  });
  return y;
}

Tensor telu_backward(const Tensor& grad_in, const Tensor& x_in) {
  check_float(x_in, "telu_backward");
  const Tensor x = dense(x_in);
  const Tensor g = in_layout_of(grad_in, x);
  Tensor out = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "telu_backward", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    const scalar_t bc = bracket_clamp_for<scalar_t>();
    at::parallel_for(0, x.numel(), kGrain, [&](int64_t b, int64_t e) { telu_backward_span(gp + b, xp + b, op + b, e - b, bc); });
  });
  return out;
}

// ------------------------------------------------------------------------------------------- PWLU
//
// Per channel c, with t = (x − B_L)·N/W (W = max(B_R − B_L, min_width)) and t₁ = t + 1, segment
// s = 0 (left tail), 1…N (intervals), N+1 (right tail) is the line y = A₁[s] + t₁·S[s] (A₁ = A − S):
//   s = 0: y = p₀ + K_L·step·t          s = j+1: y = p_j + (t − j)·(p_{j+1} − p_j)
//   s = N+1: y = p_N + K_R·step·(t − N)  (step = W/N)
// The tables are built here from the module's parameters, and the backward maps the per-segment sums
// G₀[s] = Σ g and G₁[s] = Σ g·t₁ back onto those parameters, so no autograd graph is built for them.

struct Table {
  int64_t channels, n;
  std::vector<double> inv_width, shift, a1, s, width, step;  // per channel; a1 and s per (channel, segment)
};

template <typename T>
Table build_table(const Tensor& lb, const Tensor& rb, const Tensor& points, const Tensor& kl, const Tensor& kr, double min_width) {
  Table tab;
  tab.channels = points.size(0);
  tab.n = points.size(1) - 1;
  const int64_t c_count = tab.channels, n = tab.n, m = n + 2;
  const Tensor p = points.contiguous(), lbc = lb.contiguous(), rbc = rb.contiguous(), klc = kl.contiguous(), krc = kr.contiguous();
  const T *pl = lbc.const_data_ptr<T>(), *pr = rbc.const_data_ptr<T>(), *pp = p.const_data_ptr<T>();
  const T *pkl = klc.const_data_ptr<T>(), *pkr = krc.const_data_ptr<T>();
  tab.inv_width.resize(c_count), tab.shift.resize(c_count), tab.width.resize(c_count), tab.step.resize(c_count);
  tab.a1.resize(c_count * m), tab.s.resize(c_count * m);
  for (int64_t c = 0; c < c_count; ++c) {
    const double w = std::max(double(pr[c]) - double(pl[c]), min_width), step = w / n;
    tab.width[c] = w, tab.step[c] = step, tab.inv_width[c] = n / w;
    tab.shift[c] = 1.0 - double(pl[c]) * tab.inv_width[c];
    const T* y = pp + c * (n + 1);
    double* a1 = &tab.a1[c * m];
    double* s = &tab.s[c * m];
    s[0] = double(pkl[c]) * step, a1[0] = double(y[0]) - s[0];
    for (int64_t j = 0; j < n; ++j) {
      s[j + 1] = double(y[j + 1]) - double(y[j]);
      a1[j + 1] = double(y[j]) - (j + 1) * s[j + 1];  // A − S with A = p_j − j·S
    }
    s[n + 1] = double(pkr[c]) * step, a1[n + 1] = double(y[n]) - (n + 1) * s[n + 1];
  }
  return tab;
}

// The lines of one dtype, per channel: t₁ = x·w + sh, y = a1[c·m + s] + t₁·s[c·m + s], ∂y/∂x = dydx[c·m + s].
template <typename T>
struct Lines {
  int64_t n, m, channels;
  std::vector<T> w, sh, a1, s, dydx;

  explicit Lines(const Table& tab) : n(tab.n), m(tab.n + 2), channels(tab.channels) {
    w.resize(channels), sh.resize(channels), a1.resize(channels * m), s.resize(channels * m), dydx.resize(channels * m);
    for (int64_t c = 0; c < channels; ++c) {
      w[c] = T(tab.inv_width[c]), sh[c] = T(tab.shift[c]);
      for (int64_t k = 0; k < m; ++k) {
        a1[c * m + k] = T(tab.a1[c * m + k]), s[c * m + k] = T(tab.s[c * m + k]);
        dydx[c * m + k] = T(tab.s[c * m + k] * tab.inv_width[c]);
      }
    }
  }
};

// A run of elements contiguous in memory: either one channel for all (runs along L: NCHW, layer-wise) or
// consecutive channels c0, c0+1, … (runs along C: an (N, C) matrix, channels-last).
struct Run {
  int64_t c0;
  bool channel_per_element;
};

// For a vector of elements starting at position i of a run: t₁, and the index c·m + segment into the tables.
// The segment is trunc(clamp(t₁, 0, N+1)); a NaN t₁ takes segment 0 and stays NaN in the output.
// t₁ is one fused multiply-add, in the vector lanes and in the scalar tail alike, so the forward and the
// backward (which recomputes it) always agree on the segment.
template <typename T>
inline void position(const Lines<T>& lines, const Run& run, int64_t i, const Vectorized<T>& xv, Vectorized<T>& t1,
                     Vectorized<at::vec::int_same_size_t<T>>& index) {
  using V = Vectorized<T>;
  using I = Vectorized<at::vec::int_same_size_t<T>>;
  using Int = at::vec::int_same_size_t<T>;
  V w, sh;
  I base;
  if (run.channel_per_element) {
    w = V::loadu(lines.w.data() + run.c0 + i), sh = V::loadu(lines.sh.data() + run.c0 + i);
    base = I::arange(Int((run.c0 + i) * lines.m), Int(lines.m));
  } else {
    w = V(lines.w[run.c0]), sh = V(lines.sh[run.c0]);
    base = I(Int(run.c0 * lines.m));
  }
  t1 = at::vec::fmadd(xv, w, sh);
  const V clamped = at::vec::minimum(at::vec::maximum(t1, V(T(0))), V(T(lines.n + 1)));
  // trunc() first: the conversion rounds for some types and vector widths, truncates for others.
  const V segment = V::blendv(V(T(0)), clamped.trunc(), t1 == t1);  // NaN → 0
  index = base + at::vec::convert_to_int_of_same_size(segment);
}

template <typename T>
inline int64_t position(const Lines<T>& lines, const Run& run, int64_t i, T x, T& t1) {
  const int64_t c = run.channel_per_element ? run.c0 + i : run.c0;
  t1 = std::fma(x, lines.w[c], lines.sh[c]);
  const int64_t n = lines.n;
  const int64_t segment = t1 >= T(0) ? (t1 < T(n + 1) ? int64_t(t1) : n + 1) : 0;
  return c * lines.m + segment;
}

template <typename T>
void forward_run(const Lines<T>& lines, const Run& run, const T* x, T* y, int64_t len) {
  using V = Vectorized<T>;
  using I = Vectorized<at::vec::int_same_size_t<T>>;
  int64_t i = 0;
  for (; i + V::size() <= len; i += V::size()) {
    V t1;
    I index;
    position(lines, run, i, V::loadu(x + i), t1, index);
    const V a = at::vec::gather<sizeof(T)>(lines.a1.data(), index);
    const V s = at::vec::gather<sizeof(T)>(lines.s.data(), index);
    at::vec::fmadd(t1, s, a).store(y + i);
  }
  for (; i < len; ++i) {
    T t1;
    const int64_t k = position(lines, run, i, x[i], t1);
    y[i] = std::fma(t1, lines.s[k], lines.a1[k]);
  }
}

// ∂L/∂x of a run, and the run's per-segment sums added to acc: acc[2k] += g, acc[2k+1] += g·t₁ (float32 for
// a float32 input: a run is at most kGrain elements, and the runs' sums are added up in float64).
template <typename T>
void backward_run(const Lines<T>& lines, const Run& run, const T* x, const T* g, T* gx, int64_t len, T* acc) {
  using V = Vectorized<T>;
  using Int = at::vec::int_same_size_t<T>;
  using I = Vectorized<Int>;
  constexpr int kSize = V::size();
  int64_t i = 0;
  Int indices[kSize];
  T gs[kSize], gts[kSize];
  for (; i + kSize <= len; i += kSize) {
    V t1;
    I index;
    position(lines, run, i, V::loadu(x + i), t1, index);
    const V gv = V::loadu(g + i);
    (gv * at::vec::gather<sizeof(T)>(lines.dydx.data(), index)).store(gx + i);
    index.store(indices), gv.store(gs), (gv * t1).store(gts);
    for (int lane = 0; lane < kSize; ++lane) {  // a scatter-add: lanes may share a segment
      acc[2 * indices[lane]] += gs[lane];
      acc[2 * indices[lane] + 1] += gts[lane];
    }
  }
  for (; i < len; ++i) {
    T t1;
    const int64_t k = position(lines, run, i, x[i], t1);
    gx[i] = g[i] * lines.dydx[k];
    acc[2 * k] += g[i];
    acc[2 * k + 1] += g[i] * t1;
  }
}

// Calls f(thread, run, offset, length) for contiguous runs covering a (P, C, L) view whose innermost
// dimension in memory (L, or C) has stride 1, in tasks of about kGrain elements spread over the threads;
// task_end(thread, first channel, last channel + 1) after each task.
template <typename F, typename G>
void for_each_run(const Tensor& t, const F& f, const G& task_end) {
  const int64_t P = t.size(0), C = t.size(1), L = t.size(2);
  const int64_t sp = t.stride(0), sc = t.stride(1), sl = t.stride(2);
  if (P * C * L == 0) return;
  if (sl == 1 || L == 1) {  // runs along L, one channel each: tasks are (p, c, chunk of L)
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(L, kGrain));
    const int64_t chunks = (L + chunk - 1) / chunk;
    const int64_t grain = std::max<int64_t>(1, kGrain / chunk);
    at::parallel_for(0, P * C * chunks, grain, [&](int64_t begin, int64_t end) {
      const int thread = at::get_thread_num();
      for (int64_t task = begin; task < end; ++task) {
        const int64_t pc = task / chunks, l0 = (task % chunks) * chunk;
        const int64_t p = pc / C, c = pc % C;
        f(thread, Run{c, false}, p * sp + c * sc + l0, std::min(chunk, L - l0));
        task_end(thread, c, c + 1);
      }
    });
  } else {  // runs along C (stride 1), every channel once per row: tasks are (p, rows of L)
    TORCH_CHECK(sc == 1, "pwlu: a (P, C, L) view with stride 1 along L or C is needed");
    const int64_t rows = std::max<int64_t>(1, kGrain / C);
    const int64_t chunks = (L + rows - 1) / rows;
    at::parallel_for(0, P * chunks, 1, [&](int64_t begin, int64_t end) {
      const int thread = at::get_thread_num();
      for (int64_t task = begin; task < end; ++task) {
        const int64_t p = task / chunks, l0 = (task % chunks) * rows;
        for (int64_t l = l0; l < std::min(L, l0 + rows); ++l) f(thread, Run{0, true}, p * sp + l * sl, C);
        task_end(thread, int64_t(0), C);
      }
    });
  }
}

void check_pwlu(const Tensor& x3, const Tensor& points) {
  check_float(x3, "pwlu");
  TORCH_CHECK(x3.dim() == 3 && points.dim() == 2 && x3.size(1) == points.size(0), "pwlu: (P, C, L) input and (C, N+1) points");
  TORCH_CHECK(points.scalar_type() == x3.scalar_type(), "pwlu: parameters and input must share a dtype");
}

// y3 = PWLU(x3) for (P, C, L) views of the same layout (y3 written in place).
void pwlu_forward(const Tensor& x3, const Tensor& y3, const Tensor& lb, const Tensor& rb, const Tensor& points,
                  const Tensor& kl, const Tensor& kr, double min_width) {
  check_pwlu(x3, points);
  TORCH_CHECK(y3.strides() == x3.strides(), "pwlu_forward: input and output must share a layout");
  AT_DISPATCH_FLOATING_TYPES(x3.scalar_type(), "pwlu_forward", [&] {
    using T = scalar_t;
    const Lines<T> lines(build_table<T>(lb, rb, points, kl, kr, min_width));
    const T* xp = x3.const_data_ptr<T>();
    T* yp = y3.data_ptr<T>();
    for_each_run(
        x3, [&](int, const Run& run, int64_t offset, int64_t len) { forward_run(lines, run, xp + offset, yp + offset, len); },
        [](int, int64_t, int64_t) {});
  });
}

// Writes ∂L/∂x into gx3 and returns the gradients of (B_L, B_R, points, K_L, K_R).
std::vector<Tensor> pwlu_backward(const Tensor& g3, const Tensor& x3, const Tensor& gx3, const Tensor& lb, const Tensor& rb,
                                  const Tensor& points, const Tensor& kl, const Tensor& kr, double min_width) {
  check_pwlu(x3, points);
  TORCH_CHECK(g3.scalar_type() == x3.scalar_type() && g3.sizes() == x3.sizes(), "pwlu_backward: gradient like the input");
  TORCH_CHECK(gx3.strides() == x3.strides() && g3.strides() == x3.strides(), "pwlu_backward: gradient, input and result must share a layout");
  std::vector<Tensor> grads;
  AT_DISPATCH_FLOATING_TYPES(x3.scalar_type(), "pwlu_backward", [&] {
    using T = scalar_t;
    const Table tab = build_table<T>(lb, rb, points, kl, kr, min_width);
    const Lines<T> lines(tab);
    const int64_t n = tab.n, m = n + 2, C = tab.channels;
    // Per thread: the current task's (G₀, G₁) per channel and segment in T, and the thread's totals in double.
    const int threads = at::get_num_threads();
    const size_t table = size_t(C * m * 2);
    std::vector<T> partial(threads * table, T(0));
    std::vector<double> totals(threads * table, 0.0);
    const T* xp = x3.const_data_ptr<T>();
    const T* gp = g3.const_data_ptr<T>();
    T* gxp = gx3.data_ptr<T>();
    for_each_run(
        x3,
        [&](int thread, const Run& run, int64_t offset, int64_t len) {
          backward_run(lines, run, xp + offset, gp + offset, gxp + offset, len, partial.data() + thread * table);
        },
        [&](int thread, int64_t c_lo, int64_t c_hi) {  // into the double totals: the entries the task touched
          T* acc = partial.data() + thread * table;
          double* total = totals.data() + thread * table;
          for (int64_t k = 2 * c_lo * m; k < 2 * c_hi * m; ++k) total[k] += double(acc[k]), acc[k] = T(0);
        });
    std::vector<double> sums(table, 0.0);
    for (int t = 0; t < threads; ++t)
      for (size_t k = 0; k < table; ++k) sums[k] += totals[t * table + k];
    const auto opts = points.options();
    Tensor g_lb = at::empty({C}, opts), g_rb = at::empty({C}, opts), g_p = at::empty({C, n + 1}, opts);
    Tensor g_kl = at::empty({C}, opts), g_kr = at::empty({C}, opts);
    const Tensor lbc = lb.contiguous(), rbc = rb.contiguous(), klc = kl.contiguous(), krc = kr.contiguous();
    const T *pl = lbc.const_data_ptr<T>(), *pr = rbc.const_data_ptr<T>(), *pkl = klc.const_data_ptr<T>(), *pkr = krc.const_data_ptr<T>();
    std::vector<double> g0(m), gt(m), dp(n + 1);
    for (int64_t c = 0; c < C; ++c) {
      for (int64_t k = 0; k < m; ++k) {
        const double a = sums[(c * m + k) * 2], b = sums[(c * m + k) * 2 + 1];
        g0[k] = a, gt[k] = b - a;  // Σ g and Σ g·t over the segment: ∂A and ∂S
      }
      const double* s = &tab.s[c * m];
      const double inv_w = tab.inv_width[c], step = tab.step[c], width = tab.width[c];
      double sum_gs = 0, sum_gst = 0;
      for (int64_t k = 0; k < m; ++k) sum_gs += s[k] * g0[k], sum_gst += s[k] * gt[k];
      // A[0] = p₀, A[j+1] = (1 + j)·p_j − j·p_{j+1}, A[N+1] = p_N − N·K_R·step; S[j+1] = p_{j+1} − p_j.
      std::fill(dp.begin(), dp.end(), 0.0);
      dp[0] += g0[0];
      for (int64_t j = 0; j < n; ++j) {
        dp[j] += (1 + j) * g0[j + 1] - gt[j + 1];
        dp[j + 1] += -double(j) * g0[j + 1] + gt[j + 1];
      }
      dp[n] += g0[n + 1];
      const double kr_c = pkr[c], kl_c = pkl[c];
      const double d_step = gt[0] * kl_c + gt[n + 1] * kr_c - n * kr_c * g0[n + 1];
      const double d_inv_w = sum_gst / inv_w;  // t = (x − B_L)·inv_w
      const double d_width = d_step / n - d_inv_w * n / (width * width);
      const bool unclamped = double(pr[c]) - double(pl[c]) >= min_width;
      g_lb.data_ptr<T>()[c] = T(-inv_w * sum_gs - (unclamped ? d_width : 0.0));
      g_rb.data_ptr<T>()[c] = T(unclamped ? d_width : 0.0);
      g_kl.data_ptr<T>()[c] = T(gt[0] * step);
      g_kr.data_ptr<T>()[c] = T(gt[n + 1] * step - n * step * g0[n + 1]);
      T* out = g_p.data_ptr<T>() + c * (n + 1);
      for (int64_t j = 0; j <= n; ++j) out[j] = T(dp[j]);
    }
    grads = {g_lb, g_rb, g_p, g_kl, g_kr};
  });
  return grads;
}

// TeLU with its backward node in C++: one dispatcher call per pass, as for torch's own activations.
struct TeLUFunction : public torch::autograd::Function<TeLUFunction> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& x) {
    ctx->save_for_backward({x});
    return telu_forward(x);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const Tensor x = ctx->get_saved_variables()[0];
    if (at::GradMode::is_enabled()) {  // create_graph: the same slope in differentiable ops (see _telu.py)
      const Tensor e = at::exp(at::clamp_max(x, kExpClamp));
      const Tensor t = at::tanh(e);
      const double lowest = x.scalar_type() == at::kFloat ? -double(std::numeric_limits<float>::max()) : -std::numeric_limits<double>::max();
      return {grads[0] * (t + at::clamp(x, lowest, kExpClamp) * (e * (1 - t * t)))};
    }
    return {telu_backward(grads[0], x)};
  }
};

Tensor telu_autograd(const Tensor& x) { return TeLUFunction::apply(x); }

// A (P, C, L) view of t in which each run along L shares one channel, or an undefined tensor when t's
// layout has none (as _view3 in _pwlu.py): contiguous (B, C, …) gives (B, C, ∏…); a (B, C) matrix and a
// channels-last tensor give (1, C, B·∏…) with the channel the fast dimension; layer-wise, any dense
// tensor gives (1, 1, numel) in memory order.
Tensor view3(const Tensor& t, int64_t channels, bool channelwise) {
  if (!channelwise) {
    if (t.is_contiguous()) return t.view({1, 1, -1});
    if (!t.is_non_overlapping_and_dense()) return {};
    std::vector<int64_t> order(t.dim());
    for (int64_t d = 0; d < t.dim(); ++d) order[d] = d;
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return t.stride(a) > t.stride(b); });
    return t.permute(order).view({1, 1, -1});
  }
  if (t.is_contiguous()) {
    const int64_t rest = t.dim() > 2 ? t.numel() / std::max<int64_t>(1, t.size(0) * channels) : 1;
    if (t.dim() > 2 && rest > 1) return t.view({t.size(0), channels, rest});
    return t.view({-1, channels}).t().unsqueeze(0);
  }
  if (t.dim() > 2 && t.movedim(1, -1).is_contiguous()) return t.movedim(1, -1).reshape({-1, channels}).t().unsqueeze(0);
  return {};
}

// y = PWLU(x), and the tensor the kernel read: x, or a contiguous copy when x's layout has no (P, C, L) view.
std::pair<Tensor, Tensor> pwlu_apply(const Tensor& x, const Tensor& lb, const Tensor& rb, const Tensor& points, const Tensor& kl,
                                     const Tensor& kr, bool channelwise, double min_width) {
  const int64_t channels = points.size(0);
  Tensor source = x, x3 = view3(x, channels, channelwise);
  if (!x3.defined()) source = x.contiguous(), x3 = view3(source, channels, channelwise);
  Tensor y = at::empty_like(source);
  pwlu_forward(x3, view3(y, channels, channelwise), lb, rb, points, kl, kr, min_width);
  return {source, y};
}

// PWLU with its backward node in C++ (the Python autograd.Function around the same two kernels cost
// several times the kernels themselves at MLP sizes). Saved: the input and the parameters.
struct PWLUFunction : public torch::autograd::Function<PWLUFunction> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& x, const Tensor& lb, const Tensor& rb, const Tensor& points,
                        const Tensor& kl, const Tensor& kr, bool channelwise, double min_width) {
    auto [source, y] = pwlu_apply(x, lb, rb, points, kl, kr, channelwise, min_width);
    ctx->save_for_backward({source, lb, rb, points, kl, kr});
    ctx->saved_data["channelwise"] = channelwise;
    ctx->saved_data["min_width"] = min_width;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    TORCH_CHECK(!at::GradMode::is_enabled(), "pwlu: second derivatives (backward with create_graph=True) are not supported");
    const auto saved = ctx->get_saved_variables();
    const Tensor &source = saved[0], &points = saved[3];
    const bool channelwise = ctx->saved_data["channelwise"].toBool();
    const int64_t channels = points.size(0);
    const Tensor x3 = view3(source, channels, channelwise);
    Tensor g = grads[0], g3 = view3(g, channels, channelwise);
    if (!g3.defined() || g3.strides() != x3.strides() || g.scalar_type() != source.scalar_type()) {
      g = in_layout_of(grads[0], source);  // e.g. the expanded gradient of a sum()
      g3 = view3(g, channels, channelwise);
    }
    Tensor grad_x = at::empty_like(source);
    auto params = pwlu_backward(g3, x3, view3(grad_x, channels, channelwise), saved[1], saved[2], points, saved[4], saved[5],
                                ctx->saved_data["min_width"].toDouble());
    return {grad_x, params[0], params[1], params[2], params[3], params[4], Tensor(), Tensor()};
  }
};

Tensor pwlu_inference(const Tensor& x, const Tensor& lb, const Tensor& rb, const Tensor& points, const Tensor& kl, const Tensor& kr,
                      bool channelwise, double min_width) {
  return pwlu_apply(x, lb, rb, points, kl, kr, channelwise, min_width).second;
}

Tensor pwlu_autograd(const Tensor& x, const Tensor& lb, const Tensor& rb, const Tensor& points, const Tensor& kl, const Tensor& kr,
                     bool channelwise, double min_width) {
  return PWLUFunction::apply(x, lb, rb, points, kl, kr, channelwise, min_width);
}

}  // namespace

TORCH_LIBRARY(actstudy, m) {
  m.def("telu(Tensor x) -> Tensor");
  m.def("pwlu(Tensor x, Tensor left_bound, Tensor right_bound, Tensor points, Tensor left_slope, Tensor right_slope, "
        "bool channelwise, float min_width) -> Tensor");
}

TORCH_LIBRARY_IMPL(actstudy, CPU, m) {
  m.impl("telu", &telu_forward);
  m.impl("pwlu", &pwlu_inference);
}

TORCH_LIBRARY_IMPL(actstudy, Autograd, m) {
  m.impl("telu", &telu_autograd);
  m.impl("pwlu", &pwlu_autograd);
}
