// Weighted correlation clustering (oracle spec v2): the partition of the live neurons that maximises
// the Constant Potts Model quality Q = sum over same-group pairs of (r_ij - threshold), found the way
// the reference does it, step for step: KwikCluster pivots on the graph r >= threshold in n_init
// SplitMix64 orders, single-neuron moves until none gains, the best restart kept.
//
// Exactness: a neuron's gain towards group b is summed over the live neurons in ascending index, one
// rounded (r_ij - threshold) at a time, which is the order numpy's bincount adds them in. The moves
// therefore see the reference's bits whenever the correlation matrix holds the reference's bits.
#include <algorithm>
#include <cmath>
#include <limits>

#include <tbb/parallel_for.h>

#include "analysis/grouping.hpp"

namespace neuronmap::detail {
namespace {

constexpr double kMoveMargin = 1e-12;    // a move must raise Q by more than this
constexpr double kRestartMargin = 1e-9;  // a later restart must beat the best by this x max(1, |Q|)
constexpr int kMaxSweeps = 100;

/// One restart's partition of the live neurons (labels of dead neurons stay -1).
struct Restart {
  std::vector<std::int32_t> labels;
  double quality = 0.0;
  int sweeps = 0;
};

/// The working state of one restart: preallocated so that a sweep allocates nothing.
template <typename Scalar>
class LocalMoves {
 public:
  LocalMoves(const Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>>& r,
             const std::vector<std::int32_t>& live, double threshold)
      : r_(r), live_(live), threshold_(threshold) {
    const auto n = static_cast<std::size_t>(r.rows());
    labels_.assign(n, -1);
    // Labels never exceed 2n after compaction at the start of a sweep (n existing + n new ones).
    gain_.assign(2 * n + 1, 0.0);
    size_.assign(2 * n + 1, 0);
    remap_.assign(2 * n + 1, -1);
  }

  Restart run(const std::vector<std::int32_t>& order) {
    pivot(order);
    int sweeps = 0;
    for (sweeps = 1; sweeps <= kMaxSweeps; ++sweeps) {
      compact_labels();
      if (!sweep()) break;
    }
    Restart out;
    out.sweeps = std::min(sweeps, kMaxSweeps);
    out.quality = quality();
    out.labels = labels_;
    return out;
  }

 private:
  double weight(std::int32_t i, std::int32_t j) const {
    // (double) r - threshold, rounded once: numpy's W = C - threshold.
    return static_cast<double>(r_(i, j)) - threshold_;
  }

  // KwikCluster: each free pivot takes every free live neuron j with r(pivot, j) >= threshold.
  void pivot(const std::vector<std::int32_t>& order) {
    next_label_ = 0;
    for (const std::int32_t p : order) {
      if (labels_[static_cast<std::size_t>(p)] != -1) continue;
      const std::int32_t label = next_label_++;
      labels_[static_cast<std::size_t>(p)] = label;
      std::int32_t taken = 1;
      const Scalar* column = r_.col(p).data();  // symmetric: column p is row p
      for (const std::int32_t j : live_) {
        if (labels_[static_cast<std::size_t>(j)] == -1 && static_cast<double>(column[j]) >= threshold_) {
          labels_[static_cast<std::size_t>(j)] = label;
          ++taken;
        }
      }
      size_[static_cast<std::size_t>(label)] = taken;
    }
  }

  // Renumbers the labels in use to 0, 1, ... keeping their order. Only the order of labels matters
  // to the moves (ties go to the smallest label; a new group gets a label above all others), so this
  // changes no decision and keeps the label range, and with it the argmax, within 2n.
  void compact_labels() {
    std::int32_t used = 0;
    for (std::int32_t b = 0; b < next_label_; ++b) {
      const auto k = static_cast<std::size_t>(b);
      remap_[k] = size_[k] > 0 ? used++ : -1;
    }
    for (std::int32_t b = 0; b < next_label_; ++b) {
      const auto k = static_cast<std::size_t>(b);
      if (remap_[k] >= 0) size_[static_cast<std::size_t>(remap_[k])] = size_[k];
    }
    std::fill(size_.begin() + used, size_.begin() + next_label_, 0);
    for (const std::int32_t j : live_) {
      auto& label = labels_[static_cast<std::size_t>(j)];
      label = remap_[static_cast<std::size_t>(label)];
    }
    next_label_ = used;
  }

  // One pass over the live neurons in ascending index; true when some neuron moved.
  bool sweep() {
    bool moved = false;
    for (const std::int32_t i : live_) {
      if (next_label_ >= static_cast<std::int32_t>(gain_.size())) compact_labels();
      const std::int32_t a = labels_[static_cast<std::size_t>(i)];
      std::fill(gain_.begin(), gain_.begin() + next_label_, 0.0);
      const Scalar* column = r_.col(i).data();
      for (const std::int32_t j : live_) {
        if (j == i) continue;  // W's zero diagonal adds nothing
        gain_[static_cast<std::size_t>(labels_[static_cast<std::size_t>(j)])] +=
            static_cast<double>(column[j]) - threshold_;
      }
      const double stay = gain_[static_cast<std::size_t>(a)];
      std::int32_t best = a;
      double best_delta = 0.0;  // delta[a] = 0; the first strictly larger delta wins
      for (std::int32_t b = 0; b < next_label_; ++b) {
        if (b == a || size_[static_cast<std::size_t>(b)] == 0) continue;
        const double delta = gain_[static_cast<std::size_t>(b)] - stay;
        if (delta > best_delta || (b < best && delta == best_delta)) {
          best = b;
          best_delta = delta;
        }
      }
      std::int32_t target = -1;
      if (best != a && best_delta > kMoveMargin) {
        target = best;
      } else if (-stay > kMoveMargin) {
        target = next_label_++;  // alone beats staying and every other group
      }
      if (target < 0) continue;
      --size_[static_cast<std::size_t>(a)];
      ++size_[static_cast<std::size_t>(target)];
      labels_[static_cast<std::size_t>(i)] = target;
      moved = true;
    }
    return moved;
  }

  // Q = sum over same-group live pairs i < j of (r_ij - threshold).
  double quality() const {
    double q = 0.0;
    for (std::size_t x = 0; x < live_.size(); ++x) {
      const std::int32_t i = live_[x];
      const std::int32_t label = labels_[static_cast<std::size_t>(i)];
      double row = 0.0;
      for (std::size_t y = x + 1; y < live_.size(); ++y) {
        const std::int32_t j = live_[y];
        if (labels_[static_cast<std::size_t>(j)] == label) row += weight(i, j);
      }
      q += row;
    }
    return q;
  }

  const Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>>& r_;
  const std::vector<std::int32_t>& live_;
  double threshold_;
  std::vector<std::int32_t> labels_;
  std::vector<double> gain_;
  std::vector<std::int32_t> size_;
  std::vector<std::int32_t> remap_;
  std::int32_t next_label_ = 0;
};

}  // namespace

std::uint64_t SplitMix64::next() noexcept {
  state_ += 0x9E3779B97F4A7C15ULL;
  std::uint64_t z = state_;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

std::vector<std::int32_t> SplitMix64::permutation(std::int32_t n) {
  std::vector<std::int32_t> p(static_cast<std::size_t>(std::max(n, 0)));
  for (std::int32_t i = 0; i < n; ++i) p[static_cast<std::size_t>(i)] = i;
  for (std::int32_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<std::size_t>(next() % static_cast<std::uint64_t>(i + 1));
    std::swap(p[static_cast<std::size_t>(i)], p[j]);
  }
  return p;
}

GroupingResult correlation_groups(const Correlation& corr, double threshold, int min_group_size, int n_init,
                                  std::uint64_t seed) {
  const auto n = static_cast<std::int32_t>(corr.r.rows());
  std::vector<std::int32_t> live;
  live.reserve(static_cast<std::size_t>(n));
  for (std::int32_t i = 0; i < n; ++i)
    if (corr.dead.empty() || !corr.dead[static_cast<std::size_t>(i)]) live.push_back(i);

  // Every restart's order comes from one stream, drawn up front so that restarts can run in parallel
  // and still see the reference's orders.
  SplitMix64 rng(seed);
  std::vector<std::vector<std::int32_t>> orders(static_cast<std::size_t>(std::max(n_init, 1)));
  for (auto& order : orders) {
    order = rng.permutation(static_cast<std::int32_t>(live.size()));
    for (auto& k : order) k = live[static_cast<std::size_t>(k)];
  }
  std::vector<Restart> restarts(orders.size());
  corr.r.visit([&](const auto& r) {
    using Scalar = typename std::decay_t<decltype(r)>::Scalar;
    const Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>> view(r.data(), r.rows(), r.cols());
    tbb::parallel_for(std::size_t{0}, orders.size(), [&](std::size_t k) {
      LocalMoves<Scalar> moves(view, live, threshold);
      restarts[k] = moves.run(orders[k]);
    });
    return 0;
  });

  std::size_t best = 0;
  for (std::size_t k = 1; k < restarts.size(); ++k) {
    const double q = restarts[best].quality;
    if (restarts[k].quality > q + kRestartMargin * std::max(1.0, std::abs(q))) best = k;
  }
  GroupingResult out = finish_groups(corr, restarts[best].labels, min_group_size);
  out.quality = restarts[best].quality;
  out.sweeps = restarts[best].sweeps;
  for (const auto& restart : restarts) out.quality_by_restart.push_back(restart.quality);
  out.n_edges = count_edges(corr, threshold, live);
  return out;
}

}  // namespace neuronmap::detail
