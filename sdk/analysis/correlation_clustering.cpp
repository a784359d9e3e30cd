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

/// The '+' graph (r >= threshold) as ascending neighbour lists of the live neurons, shared by the
/// restarts. Empty (dense = true) when it would hold more than a quarter of all pairs: then every
/// decision scans the whole row, which costs no more.
struct PlusGraph {
  bool dense = true;
  std::vector<std::int64_t> begin;  ///< per neuron, into `neighbours` (n + 1 entries)
  std::vector<std::int32_t> neighbours;
};

/// The working state of one restart, preallocated so that a sweep allocates nothing.
///
/// A move decision needs the gain of neuron i towards groups: the sum of (r_ij - threshold) over the
/// members j of a group, in ascending j. Members are kept grouped by label (a counting sort of the
/// labels, rebuilt after every kMaxPending moves and at each sweep's start) plus the few neurons moved
/// since, so a group's gain is summed over its members alone, in the reference's order. When i gains
/// nothing by staying negative (stay >= 0), only groups holding one of i's '+' neighbours can beat
/// staying, and only theirs are summed; otherwise the whole row is scanned, as the reference does.
template <typename Scalar>
class LocalMoves {
 public:
  using Matrix = Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>>;

  LocalMoves(const Matrix& r, const std::vector<std::int32_t>& live, const PlusGraph& plus, double threshold)
      : r_(r), live_(live), plus_(plus), threshold_(threshold) {
    const auto n = static_cast<std::size_t>(r.rows());
    labels_.assign(n, -1);
    // Labels stay below 2n + 1: compaction at a sweep's start leaves at most n, and a sweep adds at
    // most one new label per neuron.
    const std::size_t label_capacity = 2 * n + 1;
    gain_.assign(label_capacity, 0.0);
    size_.assign(label_capacity, 0);
    remap_.assign(label_capacity, -1);
    first_.assign(label_capacity + 1, 0);
    seen_.assign(label_capacity, -1);
    by_label_.assign(live.size(), 0);
    candidates_.reserve(label_capacity);
    pending_.reserve(kMaxPending + 1);
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
    compact_labels();
    out.quality = quality();
    out.labels = labels_;
    return out;
  }

 private:
  static constexpr std::size_t kMaxPending = 32;

  std::size_t at(std::int32_t i) const { return static_cast<std::size_t>(i); }
  // (double) r - threshold, rounded once: numpy's W = C - threshold. Read from column i (r is
  // symmetric): the terms of one neuron's gains then come from one contiguous column, not from a row
  // that strides through the whole matrix (a cache miss per term, 5x slower at n = 4096).
  double weight(std::int32_t i, std::int32_t j) const { return static_cast<double>(r_(j, i)) - threshold_; }

  // KwikCluster: each free pivot takes every free live neuron j with r(pivot, j) >= threshold.
  void pivot(const std::vector<std::int32_t>& order) {
    next_label_ = 0;
    for (const std::int32_t p : order) {
      if (labels_[at(p)] != -1) continue;
      const std::int32_t label = next_label_++;
      labels_[at(p)] = label;
      std::int32_t taken = 1;
      auto take = [&](std::int32_t j) {
        if (labels_[at(j)] == -1) {
          labels_[at(j)] = label;
          ++taken;
        }
      };
      if (plus_.dense) {
        const Scalar* column = r_.col(p).data();  // symmetric: column p is row p
        for (const std::int32_t j : live_)
          if (j != p && static_cast<double>(column[j]) >= threshold_) take(j);
      } else {
        for (auto k = plus_.begin[at(p)]; k < plus_.begin[at(p) + 1]; ++k) take(plus_.neighbours[static_cast<std::size_t>(k)]);
      }
      size_[at(label)] = taken;
    }
  }

  // Renumbers the labels in use to 0, 1, ... keeping their order, then regroups the members. Only the
  // order of labels matters to the moves (ties go to the smallest label; a new group gets a label
  // above all others), so this changes no decision.
  void compact_labels() {
    std::int32_t used = 0;
    for (std::int32_t b = 0; b < next_label_; ++b) remap_[at(b)] = size_[at(b)] > 0 ? used++ : -1;
    for (std::int32_t b = 0; b < next_label_; ++b)
      if (remap_[at(b)] >= 0) size_[at(remap_[at(b)])] = size_[at(b)];
    std::fill(size_.begin() + used, size_.begin() + next_label_, 0);
    for (const std::int32_t j : live_) labels_[at(j)] = remap_[at(labels_[at(j)])];
    next_label_ = used;
    regroup();
  }

  // Counting sort of the live neurons by label, ascending index within a label.
  void regroup() {
    std::fill(first_.begin(), first_.begin() + next_label_ + 1, 0);
    for (const std::int32_t j : live_) ++first_[at(labels_[at(j)]) + 1];
    for (std::int32_t b = 0; b < next_label_; ++b) first_[at(b) + 1] += first_[at(b)];
    std::copy(first_.begin(), first_.begin() + next_label_ + 1, remap_.begin());  // fill cursors
    for (const std::int32_t j : live_) by_label_[static_cast<std::size_t>(remap_[at(labels_[at(j)])]++)] = j;
    grouped_labels_ = next_label_;
    pending_.clear();
  }

  // Sum of weight(i, j) over the current members j != i of group b, in ascending j: the grouped
  // members still labelled b merged with the pending (moved since the regrouping) ones now in b.
  double gain_of(std::int32_t i, std::int32_t b) const {
    double sum = 0.0;
    std::size_t k = b < grouped_labels_ ? static_cast<std::size_t>(first_[at(b)]) : 0;
    const std::size_t end = b < grouped_labels_ ? static_cast<std::size_t>(first_[at(b) + 1]) : 0;
    std::size_t m = 0;
    for (;;) {
      while (k < end && labels_[at(by_label_[k])] != b) ++k;
      while (m < pending_.size() && labels_[at(pending_[m])] != b) ++m;
      const bool grouped = k < end, moved = m < pending_.size();
      if (!grouped && !moved) break;
      std::int32_t j;
      if (grouped && (!moved || by_label_[k] < pending_[m])) {
        j = by_label_[k++];
      } else {
        j = pending_[m++];
      }
      if (j != i) sum += weight(i, j);
    }
    return sum;
  }

  // One pass over the live neurons in ascending index; true when some neuron moved.
  bool sweep() {
    bool moved = false;
    for (const std::int32_t i : live_) {
      const std::int32_t a = labels_[at(i)];
      std::int32_t target = plus_.dense ? -1 : decide_from_neighbours(i, a);
      if (target == kScanRow) target = decide_from_row(i, a);
      if (target < 0) continue;
      --size_[at(a)];
      ++size_[at(target)];
      labels_[at(i)] = target;
      pending_.insert(std::upper_bound(pending_.begin(), pending_.end(), i), i);
      if (pending_.size() > kMaxPending) regroup();
      moved = true;
    }
    return moved;
  }

  static constexpr std::int32_t kScanRow = -2;

  // The move of i when staying gains >= 0: only a group with a '+' neighbour of i can gain more.
  // Returns the target label, -1 to stay, or kScanRow when staying loses (the row must be scanned).
  std::int32_t decide_from_neighbours(std::int32_t i, std::int32_t a) {
    const double stay = gain_of(i, a);
    if (stay < 0.0) return kScanRow;
    candidates_.clear();
    ++decision_;
    for (auto k = plus_.begin[at(i)]; k < plus_.begin[at(i) + 1]; ++k) {
      const std::int32_t b = labels_[at(plus_.neighbours[static_cast<std::size_t>(k)])];
      if (b == a || seen_[at(b)] == decision_) continue;
      seen_[at(b)] = decision_;
      candidates_.push_back(b);
    }
    std::int32_t best = a;
    double best_delta = 0.0;
    for (const std::int32_t b : candidates_) {
      const double delta = gain_of(i, b) - stay;
      if (delta > best_delta || (delta == best_delta && b < best)) {
        best = b;
        best_delta = delta;
      }
    }
    return best != a && best_delta > kMoveMargin ? best : -1;
  }

  // The reference's decision from every group's gain: the largest gain[b] - gain[a] over non-empty
  // b != a (ties: smallest label) if it exceeds the margin, else a new group if staying loses.
  std::int32_t decide_from_row(std::int32_t i, std::int32_t a) {
    std::fill(gain_.begin(), gain_.begin() + next_label_, 0.0);
    const Scalar* column = r_.col(i).data();
    for (const std::int32_t j : live_) {
      if (j == i) continue;  // W's zero diagonal adds nothing
      gain_[at(labels_[at(j)])] += static_cast<double>(column[j]) - threshold_;
    }
    const double stay = gain_[at(a)];
    std::int32_t best = a;
    double best_delta = 0.0;
    for (std::int32_t b = 0; b < next_label_; ++b) {
      if (b == a || size_[at(b)] == 0) continue;
      const double delta = gain_[at(b)] - stay;
      if (delta > best_delta || (delta == best_delta && b < best)) {
        best = b;
        best_delta = delta;
      }
    }
    if (best != a && best_delta > kMoveMargin) return best;
    if (-stay > kMoveMargin) return next_label_++;  // alone beats staying and every other group
    return -1;
  }

  // Q = sum over same-group live pairs i < j of (r_ij - threshold), group by group.
  double quality() const {
    double q = 0.0;
    for (std::int32_t b = 0; b < grouped_labels_; ++b) {
      for (auto x = first_[at(b)]; x < first_[at(b) + 1]; ++x) {
        double row = 0.0;
        for (auto y = x + 1; y < first_[at(b) + 1]; ++y)
          row += weight(by_label_[static_cast<std::size_t>(x)], by_label_[static_cast<std::size_t>(y)]);
        q += row;
      }
    }
    return q;
  }

  const Matrix& r_;
  const std::vector<std::int32_t>& live_;
  const PlusGraph& plus_;
  double threshold_;
  std::vector<std::int32_t> labels_;
  std::vector<double> gain_;
  std::vector<std::int32_t> size_;
  std::vector<std::int32_t> remap_;
  std::vector<std::int32_t> first_;     // grouped members of label b: by_label_[first_[b] .. first_[b + 1])
  std::vector<std::int32_t> by_label_;  // the live neurons sorted by (label at the regrouping, index)
  std::vector<std::int32_t> pending_;   // moved since the regrouping, ascending
  std::vector<std::int64_t> seen_;      // per label: the last decision that listed it as a candidate
  std::int64_t decision_ = 0;
  std::vector<std::int32_t> candidates_;
  std::int32_t next_label_ = 0;
  std::int32_t grouped_labels_ = 0;
};

template <typename Matrix>
PlusGraph plus_graph(const Matrix& r, const std::vector<std::int32_t>& live, double threshold) {
  PlusGraph g;
  const auto n = static_cast<std::size_t>(r.rows());
  const auto live_count = static_cast<std::int64_t>(live.size());
  std::vector<std::int64_t> degree(n, 0);
  tbb::parallel_for(std::size_t{0}, live.size(), [&](std::size_t x) {
    const std::int32_t i = live[x];
    const auto* column = r.col(i).data();
    std::int64_t d = 0;
    for (const std::int32_t j : live) d += (j != i && static_cast<double>(column[j]) >= threshold) ? 1 : 0;
    degree[static_cast<std::size_t>(i)] = d;
  });
  std::int64_t total = 0;
  for (const auto d : degree) total += d;
  if (total > live_count * live_count / 4) return g;
  g.dense = false;
  g.begin.assign(n + 1, 0);
  for (std::size_t i = 0; i < n; ++i) g.begin[i + 1] = g.begin[i] + degree[i];
  g.neighbours.resize(static_cast<std::size_t>(total));
  tbb::parallel_for(std::size_t{0}, live.size(), [&](std::size_t x) {
    const std::int32_t i = live[x];
    const auto* column = r.col(i).data();
    auto k = static_cast<std::size_t>(g.begin[static_cast<std::size_t>(i)]);
    for (const std::int32_t j : live)
      if (j != i && static_cast<double>(column[j]) >= threshold) g.neighbours[k++] = j;
  });
  return g;
}

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
    const typename LocalMoves<Scalar>::Matrix view(r.data(), r.rows(), r.cols());
    const PlusGraph plus = plus_graph(view, live, threshold);
    tbb::parallel_for(std::size_t{0}, orders.size(), [&](std::size_t k) {
      LocalMoves<Scalar> moves(view, live, plus, threshold);
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
