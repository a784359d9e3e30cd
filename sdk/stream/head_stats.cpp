// Per-head attention statistics: see head_stats.hpp and docs/HEADS.md.
#include "stream/head_stats.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace neuronmap::detail {

void HeadAccumulator::add(const float* rows, std::int64_t n_rows, std::int64_t cols,
                          const std::vector<std::int64_t>& shape) {
  if (shape.size() != 4 || shape[1] != cols || shape[0] * shape[2] * shape[3] != n_rows) {
    throw std::invalid_argument("attention weights of " + std::to_string(n_rows) + " x " + std::to_string(cols) +
                                " rows do not fit a [B, H, T, S] output");
  }
  const std::int64_t B = shape[0], H = shape[1], T = shape[2], S = shape[3];
  if (heads == 0) {
    heads = H;
    const auto h = static_cast<std::size_t>(H);
    queries.assign(h, 0);
    open_queries.assign(h, 0);
    collapsed_queries.assign(h, 0);
    entropy.assign(h, 0.0);
    entropy_sq.assign(h, 0.0);
    max_weight.assign(h, 0.0);
    distance.assign(h, 0.0);
    offset_sum.assign(h * kWidth, 0.0);
    offset_count.assign(kWidth, 0);
  } else if (heads != H) {
    throw std::invalid_argument("attention heads changed from " + std::to_string(heads) + " to " + std::to_string(H));
  }
  if (T != S) self_attention = false;
  std::vector<std::int64_t> counted(kWidth, 0);
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t t = 0; t < T; ++t) {
      const float* query = rows + (b * T + t) * S * H;  // S rows of H weights
      for (std::int64_t h = 0; h < H; ++h) {
        double sum_wlogw = 0.0, largest = 0.0, dist = 0.0;
        std::int64_t keys = 0;
        bool finite = true;
        for (std::int64_t s = 0; s < S; ++s) {
          const double w = query[s * H + h];
          if (!std::isfinite(w)) {
            finite = false;
            break;
          }
          if (w > 0.0) {
            ++keys;
            sum_wlogw += w * std::log(w);
          }
          if (w > largest) largest = w;
          dist += w * static_cast<double>(std::llabs(s - t));
        }
        if (!finite) continue;
        const auto hh = static_cast<std::size_t>(h);
        ++queries[hh];
        distance[hh] += dist;
        if (keys > 1) {  // a query with one key (the first of a causal mask) says nothing about the head
          const double normalised = -sum_wlogw / std::log(static_cast<double>(keys));
          ++open_queries[hh];
          entropy[hh] += normalised;
          entropy_sq[hh] += normalised * normalised;
          max_weight[hh] += largest;
          if (largest >= 0.95) ++collapsed_queries[hh];
        }
        for (int o = -kOffsets; o <= kOffsets; ++o) {
          const std::int64_t s = t + o;
          if (s < 0 || s >= S) continue;
          offset_sum[hh * kWidth + static_cast<std::size_t>(o + kOffsets)] += query[s * H + h];
          if (h == 0) ++counted[static_cast<std::size_t>(o + kOffsets)];
        }
      }
    }
  }
  for (int k = 0; k < kWidth; ++k) offset_count[static_cast<std::size_t>(k)] += counted[static_cast<std::size_t>(k)];
}

void HeadAccumulator::merge(const HeadAccumulator& other) {
  if (other.heads == 0) return;
  if (heads == 0) {
    *this = other;
    return;
  }
  if (other.heads != heads) return;
  self_attention = self_attention && other.self_attention;
  for (std::size_t h = 0; h < queries.size(); ++h) {
    queries[h] += other.queries[h];
    open_queries[h] += other.open_queries[h];
    collapsed_queries[h] += other.collapsed_queries[h];
    entropy[h] += other.entropy[h];
    entropy_sq[h] += other.entropy_sq[h];
    max_weight[h] += other.max_weight[h];
    distance[h] += other.distance[h];
  }
  for (std::size_t i = 0; i < offset_sum.size(); ++i) offset_sum[i] += other.offset_sum[i];
  for (std::size_t k = 0; k < offset_count.size(); ++k) offset_count[k] += other.offset_count[k];
}

std::vector<HeadStatistics> HeadAccumulator::finish() const {
  std::vector<HeadStatistics> out(static_cast<std::size_t>(heads));
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (std::size_t h = 0; h < out.size(); ++h) {
    HeadStatistics& s = out[h];
    s.queries = queries[h];
    s.offset_weight.assign(kWidth, nan);
    if (s.queries == 0) {
      s.role = "none";
      continue;
    }
    if (self_attention) s.distance_mean = distance[h] / static_cast<double>(s.queries);
    if (open_queries[h] > 0) {
      const double n = static_cast<double>(open_queries[h]);
      s.entropy_mean = entropy[h] / n;
      s.entropy_std = std::sqrt(std::max(0.0, entropy_sq[h] / n - s.entropy_mean * s.entropy_mean));
      s.concentration = max_weight[h] / n;
      s.collapsed_fraction = static_cast<double>(collapsed_queries[h]) / n;
    } else {
      s.concentration = 1.0;
      s.collapsed_fraction = 1.0;
    }
    // offset_count counts (sample, query) pairs of head 0; every head saw the same ones unless a query
    // was skipped as non-finite, which the per-head count would then overstate by at most those.
    for (std::size_t k = 0; k < static_cast<std::size_t>(kWidth); ++k) {
      if (offset_count[k] > 0) s.offset_weight[k] = offset_sum[h * kWidth + k] / static_cast<double>(offset_count[k]);
    }
    s.uniform = s.entropy_mean >= 0.95;
    s.collapsed = s.collapsed_fraction >= 0.9;
    s.role = head_role(s);
  }
  return out;
}

}  // namespace neuronmap::detail
