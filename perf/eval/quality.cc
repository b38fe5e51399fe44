#include "eval/quality.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>

#include "codec/cpu/cpu_codec.h"
#include "codec/plan.h"
#include "eval/kmeans.h"

namespace lshmoe::eval {
namespace {

// Squared-error sums over all messages; ratios taken at the end.
struct ErrorSums {
  double x_err = 0, x_norm = 0, a1_err = 0, a0_err = 0, y_norm = 0;

  void add_dispatch(const float* x_hat, const float* x, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      const double d = double(x_hat[i]) - x[i];
      x_err += d * d;
      x_norm += double(x[i]) * x[i];
    }
  }
  void add_output(const float* a1, const float* a0, const float* y, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      const double d1 = double(a1[i]) - y[i], d0 = double(a0[i]) - y[i];
      a1_err += d1 * d1;
      a0_err += d0 * d0;
      y_norm += double(y[i]) * y[i];
    }
  }
  ErrorFigures figures() const {
    auto ratio = [](double e, double n) { return n > 0 ? std::sqrt(e / n) : 0.0; };
    return ErrorFigures{ratio(x_err, x_norm), ratio(a1_err, y_norm), ratio(a0_err, y_norm)};
  }
};

std::vector<float> as_float(DType dtype, const void* data, size_t n) {
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = load_elem(dtype, data, i);
  return out;
}

void store_all(DType dtype, const std::vector<float>& in, std::vector<uint8_t>* out) {
  out->resize(in.size() * dtype_size(dtype));
  for (size_t i = 0; i < in.size(); ++i) store_elem(dtype, out->data(), i, in[i]);
}

// The rows each expert of the receiving rank gets (see QualityOptions).
std::vector<uint8_t> route_two_experts(const uint8_t* rows, size_t n, size_t row_bytes,
                                       size_t top2_every, size_t* first_expert_rows) {
  std::vector<size_t> to[2];
  for (size_t t = 0; t < n; ++t) {
    to[t % 2].push_back(t);
    if (top2_every > 0 && t % top2_every == 0) to[1 - t % 2].push_back(t);
  }
  std::vector<uint8_t> out;
  out.reserve((to[0].size() + to[1].size()) * row_bytes);
  for (const auto& list : to) {
    for (size_t t : list) out.insert(out.end(), rows + t * row_bytes, rows + (t + 1) * row_bytes);
  }
  *first_expert_rows = to[0].size();
  return out;
}

}  // namespace

Status evaluate(const Array& tokens, const Expert& expert, const QualityOptions& options,
                QualityReport* report) {
  const size_t h = tokens.row_elems();
  const DType dtype = tokens.dtype;
  size_t total = 0;
  for (size_t s : options.splits) total += s;
  if (total != tokens.rows()) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "splits sum to %zu rows, the tokens have %zu", total,
                tokens.rows());
  }
  Config with_comp = options.config, without_comp = options.config;
  with_comp.compensate = 1.0;
  without_comp.compensate = 0.0;
  std::unique_ptr<cpu::CpuCodec> codec, codec_a0;
  LSHMOE_RETURN_IF_ERROR(cpu::CpuCodec::create(with_comp, &codec));
  LSHMOE_RETURN_IF_ERROR(cpu::CpuCodec::create(without_comp, &codec_a0));

  QualityReport r;
  r.rows = tokens.rows();
  r.row_elems = h;
  r.dtype = dtype;
  r.messages = options.splits.size();
  r.expert = expert.name();
  r.ratio = options.config.ratio;
  r.has_kmeans = options.kmeans;
  r.combine = options.regroup ? "regroup" : "slots";
  r.two_experts = options.second_expert != nullptr;
  if (r.two_experts) r.expert += " + " + options.second_expert->name();
  ErrorSums lsh, km;
  const size_t esize = dtype_size(dtype);
  size_t first = 0;
  cpu::OriginContext origin;
  cpu::ExpertContext expert_side;
  std::vector<uint8_t> wire, combine_wire, x_hat, y_out, a1, a0, routed;
  // E(x) for a message's rows: the first `first_rows` to the first expert.
  auto apply = [&](const float* x, size_t n, size_t first_rows, float* y) {
    if (!options.second_expert) return expert.apply(x, n, y);
    expert.apply(x, first_rows, y);
    options.second_expert->apply(x + first_rows * h, n - first_rows, y + first_rows * h);
  };
  for (size_t m = 0; m < options.splits.size(); ++m) {
    size_t n = options.splits[m];
    const uint8_t* rows = tokens.data.data() + first * h * esize;
    first += n;
    if (n == 0) continue;
    size_t first_rows = n;
    if (options.second_expert) {
      routed = route_two_experts(rows, n, h * esize, options.top2_every, &first_rows);
      rows = routed.data();
      n = routed.size() / (h * esize);
    }
    lshmoe_plan_t p;
    LSHMOE_RETURN_IF_ERROR(codec->plan(n, h, dtype, &p));
    r.messages_compressed += p.compressed;
    r.slots += p.slots;
    r.logical_bytes += p.logical_bytes;
    r.dispatch_bytes += p.dispatch_bytes;
    r.combine_bytes += p.combine_bytes;
    wire.resize(p.dispatch_bytes);
    combine_wire.resize(p.combine_bytes);
    x_hat.resize(p.logical_bytes);
    a1.resize(p.logical_bytes);
    a0.resize(p.logical_bytes);

    const auto t0 = std::chrono::steady_clock::now();
    LSHMOE_RETURN_IF_ERROR(
        codec->dispatch_encode(rows, n, h, dtype, m, wire.data(), wire.size(), &origin));
    r.encode_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    LSHMOE_RETURN_IF_ERROR(codec->dispatch_decode(wire.data(), wire.size(), n, h, dtype, m,
                                                  x_hat.data(), &expert_side));
    const std::vector<float> x = as_float(dtype, rows, n * h);
    const std::vector<float> xh = as_float(dtype, x_hat.data(), n * h);
    std::vector<float> y_ref(n * h), y_hat(n * h);
    apply(x.data(), n, first_rows, y_ref.data());
    apply(xh.data(), n, first_rows, y_hat.data());
    store_all(dtype, y_hat, &y_out);
    if (options.regroup) {
      combine_wire.resize(p.dispatch_bytes);
      LSHMOE_RETURN_IF_ERROR(codec->combine_encode_regrouped(
          expert_side, y_out.data(), m, combine_wire.data(), combine_wire.size()));
      LSHMOE_RETURN_IF_ERROR(codec->combine_decode_regrouped(origin, combine_wire.data(),
                                                             combine_wire.size(), m, a1.data()));
      LSHMOE_RETURN_IF_ERROR(codec_a0->combine_decode_regrouped(origin, combine_wire.data(),
                                                                combine_wire.size(), m, a0.data()));
      r.combine_bytes += p.dispatch_bytes - p.combine_bytes;
    } else {
      LSHMOE_RETURN_IF_ERROR(codec->combine_encode(expert_side, y_out.data(), m,
                                                   combine_wire.data(), combine_wire.size()));
      LSHMOE_RETURN_IF_ERROR(
          codec->combine_decode(origin, combine_wire.data(), combine_wire.size(), m, a1.data()));
      LSHMOE_RETURN_IF_ERROR(
          codec_a0->combine_decode(origin, combine_wire.data(), combine_wire.size(), m, a0.data()));
    }
    lsh.add_dispatch(xh.data(), x.data(), n * h);
    lsh.add_output(as_float(dtype, a1.data(), n * h).data(),
                   as_float(dtype, a0.data(), n * h).data(), y_ref.data(), n * h);

    if (options.kmeans) {
      const size_t k = p.compressed ? p.slots : n;
      const KMeansResult res =
          kmeans(codec->kernels(), x.data(), n, h, k, options.kmeans_iterations,
                 options.kmeans_seed + m, options.kmeans_init);
      std::vector<float> c_rows(n * h), yc(k * h), out1(n * h), out0(n * h);
      for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < h; ++j) c_rows[i * h + j] = res.centroids[res.assignment[i] * h + j];
      expert.apply(res.centroids.data(), k, yc.data());  // one expert only (see lshmoe_eval)
      for (size_t i = 0; i < n; ++i) {
        for (size_t j = 0; j < h; ++j) {
          const float e = yc[res.assignment[i] * h + j];
          out0[i * h + j] = e;
          out1[i * h + j] = e + (x[i * h + j] - c_rows[i * h + j]);
        }
      }
      km.add_dispatch(c_rows.data(), x.data(), n * h);
      km.add_output(out1.data(), out0.data(), y_ref.data(), n * h);
    }
  }
  r.lsh = lsh.figures();
  if (options.kmeans) r.kmeans = km.figures();
  *report = r;
  return LSHMOE_SUCCESS;
}

namespace {

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c < 0x20) {
      char buf[8];
      snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  return out + "\"";
}

std::string number(double v, const char* format = "%.5f") {
  char buf[64];
  snprintf(buf, sizeof(buf), format, v);
  return buf;
}

std::string errors_json(const ErrorFigures& e) {
  return "\"rel_err_dispatch\": " + number(e.rel_err_dispatch) +
         ", \"rel_err_out\": " + number(e.rel_err_out_a1) +
         ", \"rel_err_out_no_comp\": " + number(e.rel_err_out_a0);
}

}  // namespace

std::string to_json(const QualityReport& r) {
  const double logical = r.logical_bytes ? double(r.logical_bytes) : 1.0;
  std::string out =
      "{\"rows\": " + std::to_string(r.rows) + ", \"row_elems\": " + std::to_string(r.row_elems) +
      ", \"dtype\": " + json_string(dtype_name(r.dtype)) +
      ", \"messages\": " + std::to_string(r.messages) +
      ", \"messages_compressed\": " + std::to_string(r.messages_compressed) +
      ", \"ratio\": " + number(r.ratio, "%g") + ", \"slots\": " + std::to_string(r.slots) +
      ", \"expert\": " + json_string(r.expert) +
      ", \"experts_per_rank\": " + std::to_string(r.two_experts ? 2 : 1) +
      ", \"combine\": " + json_string(r.combine) +
      ", \"logical_bytes\": " + std::to_string(r.logical_bytes) +
      ", \"dispatch_bytes\": " + std::to_string(r.dispatch_bytes) +
      ", \"combine_bytes\": " + std::to_string(r.combine_bytes) +
      ", \"wire_ratio\": " + number(double(r.dispatch_bytes) / logical) +
      ", \"combine_wire_ratio\": " + number(double(r.combine_bytes) / logical) +
      ", \"encode_seconds\": " + number(r.encode_seconds, "%.4f") + ", " + errors_json(r.lsh);
  if (r.has_kmeans) {
    const double baseline = r.kmeans.rel_err_dispatch;
    out += ", \"kmeans\": {" + errors_json(r.kmeans) + "}, \"dispatch_err_over_kmeans\": " +
           number(baseline > 0 ? r.lsh.rel_err_dispatch / baseline : 0.0, "%.4f");
  }
  return out + "}";
}

}  // namespace lshmoe::eval
