// K-means of the neurons' z-scored activation profiles without the profiles. For live neurons
// z_i . z_j = S C_ij and dead neurons are zero vectors, so with K = C' (C with dead diagonals 0),
// ||z_i - z_j||^2 = S (K_ii + K_jj - 2 K_ij) and a centroid is only ever needed through
// A(i, c) = sum_{j in c} K_ij: ||z_i - mu_c||^2 = S (K_ii - 2 A(i,c)/n_c + sum_{j in c} A(j,c)/n_c^2).
// This is kernel k-means with the linear kernel: the same iterates as Lloyd on the profiles, exact,
// and independent of S. A is updated incrementally for the few neurons that move per iteration.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "analysis/grouping.hpp"
#include "neuronmap/errors.hpp"

namespace neuronmap::detail {
namespace {

constexpr int kMaxIterations = 300;  // scikit-learn's default max_iter
constexpr int kMaxAutoK = 10;

// splitmix64: tiny, seedable, identical on every platform.
class Random {
 public:
  explicit Random(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() noexcept {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double uniform() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  std::int64_t below(std::int64_t n) noexcept {
    return std::min<std::int64_t>(n - 1, static_cast<std::int64_t>(uniform() * static_cast<double>(n)));
  }

 private:
  std::uint64_t state_;
};

template <typename R>
class Kernel {
 public:
  using Scalar = typename R::Scalar;
  Kernel(const R& r, const std::vector<std::uint8_t>& dead) : r_(r), dead_(dead), n_(r.rows()) {}

  std::int64_t size() const noexcept { return n_; }
  double self(std::int64_t i) const noexcept { return dead_[static_cast<std::size_t>(i)] ? 0.0 : 1.0; }
  bool dead(std::int64_t i) const noexcept { return dead_[static_cast<std::size_t>(i)] != 0; }
  const Scalar* column(std::int64_t j) const noexcept { return r_.data() + j * n_; }
  // Squared distance / S between neuron i and j (column j read whole by callers).
  double distance2(std::int64_t i, std::int64_t j, const Scalar* column_j) const noexcept {
    if (i == j) return 0.0;
    return std::max(0.0, self(i) + self(j) - 2.0 * static_cast<double>(column_j[i]));
  }

 private:
  const R& r_;
  const std::vector<std::uint8_t>& dead_;
  std::int64_t n_;
};

struct Run {
  std::vector<std::int32_t> labels;
  double inertia = std::numeric_limits<double>::infinity();  // / S
  int n_iter = 0;
  std::int64_t n_moves = 0;
};

// Greedy k-means++ (scikit-learn's _kmeans_plusplus): 2 + floor(ln k) candidates per centre, each
// drawn with probability proportional to the squared distance to the closest centre so far; the
// candidate that lowers the potential most is kept.
template <typename R>
std::vector<std::int64_t> kmeans_plus_plus(const Kernel<R>& kernel, int k, Random& random) {
  const std::int64_t n = kernel.size();
  std::vector<std::int64_t> centres;
  centres.push_back(random.below(n));
  std::vector<double> closest(static_cast<std::size_t>(n)), cumulative(static_cast<std::size_t>(n)),
      trial(static_cast<std::size_t>(n)), best_trial(static_cast<std::size_t>(n));
  {
    const auto* column = kernel.column(centres[0]);
    for (std::int64_t i = 0; i < n; ++i) closest[static_cast<std::size_t>(i)] = kernel.distance2(i, centres[0], column);
  }
  double potential = std::accumulate(closest.begin(), closest.end(), 0.0);
  const int trials = 2 + static_cast<int>(std::log(static_cast<double>(k)));
  for (int c = 1; c < k; ++c) {
    std::partial_sum(closest.begin(), closest.end(), cumulative.begin());
    double best_potential = std::numeric_limits<double>::infinity();
    std::int64_t best = -1;
    for (int t = 0; t < trials; ++t) {
      const double target = random.uniform() * potential;
      auto candidate = static_cast<std::int64_t>(std::lower_bound(cumulative.begin(), cumulative.end(), target) -
                                                 cumulative.begin());
      candidate = std::min(candidate, n - 1);
      const auto* column = kernel.column(candidate);
      double candidate_potential = 0.0;
      for (std::int64_t i = 0; i < n; ++i) {
        const double d = std::min(closest[static_cast<std::size_t>(i)], kernel.distance2(i, candidate, column));
        trial[static_cast<std::size_t>(i)] = d;
        candidate_potential += d;
      }
      if (candidate_potential < best_potential) {
        best_potential = candidate_potential;
        best = candidate;
        best_trial.swap(trial);
      }
    }
    centres.push_back(best);
    closest.swap(best_trial);
    potential = best_potential;
  }
  return centres;
}

// A(i, c) = sum_{j in c} K_ij from scratch, in row blocks (each block reads every column once).
template <typename R>
void accumulate_all(const Kernel<R>& kernel, const std::vector<std::int32_t>& labels, Eigen::MatrixXd& a) {
  const std::int64_t n = kernel.size();
  a.setZero();
  tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, n, 512), [&](const tbb::blocked_range<std::int64_t>& rows) {
    const std::int64_t i0 = rows.begin(), i1 = rows.end();
    for (std::int64_t j = 0; j < n; ++j) {
      const auto* column = kernel.column(j);
      double* target = a.col(labels[static_cast<std::size_t>(j)]).data();
      for (std::int64_t i = i0; i < i1; ++i) target[i] += static_cast<double>(column[i]);
    }
  });
  for (std::int64_t j = 0; j < n; ++j) {
    if (kernel.dead(j)) a(j, labels[static_cast<std::size_t>(j)]) -= 1.0;  // r_jj = 1 but K_jj = 0
  }
}

template <typename R>
void move_neuron(const Kernel<R>& kernel, std::int64_t j, int from, int to, Eigen::MatrixXd& a) {
  const std::int64_t n = kernel.size();
  const auto* column = kernel.column(j);
  double* source = a.col(from).data();
  double* target = a.col(to).data();
  for (std::int64_t i = 0; i < n; ++i) {
    const auto v = static_cast<double>(column[i]);
    source[i] -= v;
    target[i] += v;
  }
  if (kernel.dead(j)) {
    source[j] += 1.0;
    target[j] -= 1.0;
  }
}

// Sum over clusters of (sum_i K_ii - sum_{i in c} A(i,c) / n_c): the inertia / S.
template <typename R>
double inertia_of(const Kernel<R>& kernel, const std::vector<std::int32_t>& labels, const Eigen::MatrixXd& a,
                  const std::vector<std::int64_t>& counts) {
  double total = 0.0;
  for (std::int64_t i = 0; i < kernel.size(); ++i) {
    const int c = labels[static_cast<std::size_t>(i)];
    total += kernel.self(i) - a(i, c) / static_cast<double>(counts[static_cast<std::size_t>(c)]);
  }
  return std::max(0.0, total);
}

// Hartigan's single-neuron moves (Hartigan & Wong 1979, without their "live set" bookkeeping), run
// after Lloyd has converged. Moving i from cluster a (n_a members, i included) to b changes the
// inertia by n_b/(n_b+1) d(i,b) - n_a/(n_a-1) d(i,a): unlike Lloyd's test d(i,b) < d(i,a) it counts
// that both centroids move with i. Each pass visits the neurons in index order, moves a neuron to the
// cluster with the smallest added cost when that lowers the inertia, and updates A and the clusters'
// sums W_c = sum_{j in c} A(j,c) at once; passes repeat until none moves. Every move strictly lowers
// the inertia, so it ends, and the end point is also a Lloyd fixed point (n_a/(n_a-1) d_a <=
// n_b/(n_b+1) d_b implies d_a <= d_b). Returns the number of moves.
template <typename R>
std::int64_t hartigan_moves(const Kernel<R>& kernel, int k, std::vector<std::int32_t>& labels, Eigen::MatrixXd& a,
                            std::vector<std::int64_t>& counts) {
  const std::int64_t n = kernel.size();
  std::vector<double> within(static_cast<std::size_t>(k));
  auto recompute_within = [&] {
    std::fill(within.begin(), within.end(), 0.0);
    for (std::int64_t i = 0; i < n; ++i) {
      const int c = labels[static_cast<std::size_t>(i)];
      within[static_cast<std::size_t>(c)] += a(i, c);
    }
  };
  recompute_within();
  // A move must gain more than the rounding of the distances (a few ulps of O(1) terms); smaller
  // gains are not moves, which also rules out cycling on exact ties.
  constexpr double kMinGain = 1e-10;
  std::int64_t moves = 0;
  for (int pass = 0; pass < kMaxIterations; ++pass) {
    bool moved = false;
    for (std::int64_t i = 0; i < n; ++i) {
      const int from = labels[static_cast<std::size_t>(i)];
      const auto n_from = static_cast<double>(counts[static_cast<std::size_t>(from)]);
      if (n_from < 2) continue;
      const double self = kernel.self(i);
      const double d_from =
          std::max(0.0, self - 2.0 * a(i, from) / n_from + within[static_cast<std::size_t>(from)] / (n_from * n_from));
      const double removal = n_from / (n_from - 1.0) * d_from;
      double best_add = removal;
      int to = from;
      for (int c = 0; c < k; ++c) {
        if (c == from) continue;
        const auto m = static_cast<double>(counts[static_cast<std::size_t>(c)]);
        const double add =
            m == 0 ? 0.0
                   : m / (m + 1.0) * std::max(0.0, self - 2.0 * a(i, c) / m + within[static_cast<std::size_t>(c)] / (m * m));
        if (add < best_add) {
          best_add = add;
          to = c;
        }
      }
      if (to == from || best_add >= removal - kMinGain * (1.0 + removal)) continue;
      // W_a loses i's row and column (K_ii counted once), W_b gains them; A(i, .) before the move.
      within[static_cast<std::size_t>(from)] += self - 2.0 * a(i, from);
      within[static_cast<std::size_t>(to)] += self + 2.0 * a(i, to);
      move_neuron(kernel, i, from, to, a);
      --counts[static_cast<std::size_t>(from)];
      ++counts[static_cast<std::size_t>(to)];
      labels[static_cast<std::size_t>(i)] = to;
      ++moves;
      moved = true;
    }
    if (!moved) break;
    recompute_within();  // the incremental sums' rounding does not accumulate across passes
  }
  return moves;
}

template <typename R>
Run lloyd(const Kernel<R>& kernel, int k, Random& random, bool refine) {
  const std::int64_t n = kernel.size();
  const std::vector<std::int64_t> centres = kmeans_plus_plus(kernel, k, random);

  // First assignment: to the nearest seed point (first one on ties, like argmin).
  Run run;
  run.labels.assign(static_cast<std::size_t>(n), 0);
  {
    std::vector<double> best(static_cast<std::size_t>(n), std::numeric_limits<double>::infinity());
    for (int c = 0; c < k; ++c) {
      const auto* column = kernel.column(centres[static_cast<std::size_t>(c)]);
      for (std::int64_t i = 0; i < n; ++i) {
        const double d = kernel.distance2(i, centres[static_cast<std::size_t>(c)], column);
        if (d < best[static_cast<std::size_t>(i)]) {
          best[static_cast<std::size_t>(i)] = d;
          run.labels[static_cast<std::size_t>(i)] = c;
        }
      }
    }
  }

  Eigen::MatrixXd a(n, k);
  std::vector<std::int64_t> counts(static_cast<std::size_t>(k), 0);
  auto recount = [&] {
    std::fill(counts.begin(), counts.end(), 0);
    for (const auto l : run.labels) ++counts[static_cast<std::size_t>(l)];
  };
  recount();
  accumulate_all(kernel, run.labels, a);

  std::vector<std::int32_t> next(static_cast<std::size_t>(n));
  std::vector<double> distance(static_cast<std::size_t>(n));
  Eigen::VectorXd centre_norm(k);
  for (run.n_iter = 1; run.n_iter <= kMaxIterations; ++run.n_iter) {
    for (int c = 0; c < k; ++c) {
      const auto m = static_cast<double>(counts[static_cast<std::size_t>(c)]);
      double s = 0.0;
      if (m > 0) {
        for (std::int64_t i = 0; i < n; ++i) {
          if (run.labels[static_cast<std::size_t>(i)] == c) s += a(i, c);
        }
      }
      centre_norm(c) = m > 0 ? s / (m * m) : 0.0;
    }
    for (std::int64_t i = 0; i < n; ++i) {
      double best = std::numeric_limits<double>::infinity();
      int best_c = run.labels[static_cast<std::size_t>(i)];
      for (int c = 0; c < k; ++c) {
        const auto m = static_cast<double>(counts[static_cast<std::size_t>(c)]);
        if (m == 0) continue;
        const double d = kernel.self(i) - 2.0 * a(i, c) / m + centre_norm(c);
        if (d < best) {
          best = d;
          best_c = c;
        }
      }
      next[static_cast<std::size_t>(i)] = best_c;
      distance[static_cast<std::size_t>(i)] = best;
    }
    // Empty clusters take the neurons farthest from their centres (scikit-learn relocates the same way).
    std::vector<std::int64_t> next_counts(static_cast<std::size_t>(k), 0);
    for (const auto l : next) ++next_counts[static_cast<std::size_t>(l)];
    if (std::find(next_counts.begin(), next_counts.end(), 0) != next_counts.end()) {
      std::vector<std::int64_t> order(static_cast<std::size_t>(n));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](std::int64_t x, std::int64_t y) {
        return distance[static_cast<std::size_t>(x)] > distance[static_cast<std::size_t>(y)];
      });
      std::size_t o = 0;
      for (int c = 0; c < k; ++c) {
        if (next_counts[static_cast<std::size_t>(c)] > 0) continue;
        while (o < order.size() && next_counts[static_cast<std::size_t>(next[static_cast<std::size_t>(order[o])])] < 2) ++o;
        if (o == order.size()) break;
        const std::int64_t moved = order[o++];
        --next_counts[static_cast<std::size_t>(next[static_cast<std::size_t>(moved)])];
        next[static_cast<std::size_t>(moved)] = c;
        ++next_counts[static_cast<std::size_t>(c)];
      }
    }
    std::vector<std::int64_t> changed;
    for (std::int64_t i = 0; i < n; ++i) {
      if (next[static_cast<std::size_t>(i)] != run.labels[static_cast<std::size_t>(i)]) changed.push_back(i);
    }
    if (changed.empty()) break;
    // Moving one neuron reads its column once and updates two columns of A; a full recount reads
    // every column once: incremental wins until about half of the neurons move.
    if (static_cast<std::int64_t>(changed.size()) * 2 > n) {
      run.labels = next;
      accumulate_all(kernel, run.labels, a);
    } else {
      for (const std::int64_t j : changed) {
        move_neuron(kernel, j, run.labels[static_cast<std::size_t>(j)], next[static_cast<std::size_t>(j)], a);
        run.labels[static_cast<std::size_t>(j)] = next[static_cast<std::size_t>(j)];
      }
    }
    recount();
  }
  run.n_iter = std::min(run.n_iter, kMaxIterations);
  if (refine) run.n_moves = hartigan_moves(kernel, k, run.labels, a, counts);
  run.inertia = inertia_of(kernel, run.labels, a, counts);
  return run;
}

template <typename R>
KMeansFit fit(const R& r, const Correlation& corr, int k, int n_init, std::uint64_t seed, bool refine) {
  const Kernel<R> kernel(r, corr.dead);
  std::vector<Run> runs(static_cast<std::size_t>(std::max(n_init, 1)));
  tbb::parallel_for(std::size_t{0}, runs.size(), [&](std::size_t index) {
    Random random(seed ^ (0x9e3779b97f4a7c15ULL * (index + 1)));
    runs[index] = lloyd(kernel, k, random, refine);
  });
  std::size_t best = 0;
  for (std::size_t i = 1; i < runs.size(); ++i) {
    if (runs[i].inertia < runs[best].inertia) best = i;
  }
  KMeansFit out;
  out.labels = std::move(runs[best].labels);
  out.n_iter = runs[best].n_iter;
  out.n_moves = runs[best].n_moves;
  // A was updated incrementally; its rounding drift (~1e-14 relative) is far below any tolerance.
  out.inertia = runs[best].inertia * static_cast<double>(corr.n_samples);
  return out;
}

template <typename R>
KMeansFit refine_labels(const R& r, const Correlation& corr, std::vector<std::int32_t> labels, int k) {
  const Kernel<R> kernel(r, corr.dead);
  Eigen::MatrixXd a(kernel.size(), k);
  std::vector<std::int64_t> counts(static_cast<std::size_t>(k), 0);
  for (const auto l : labels) ++counts[static_cast<std::size_t>(l)];
  accumulate_all(kernel, labels, a);
  KMeansFit out;
  out.n_moves = hartigan_moves(kernel, k, labels, a, counts);
  out.inertia = inertia_of(kernel, labels, a, counts) * static_cast<double>(corr.n_samples);
  out.labels = std::move(labels);
  return out;
}

template <typename R>
double silhouette(const R& r, const Correlation& corr, const std::vector<std::int32_t>& labels) {
  const Kernel<R> kernel(r, corr.dead);
  const std::int64_t n = kernel.size();
  // Dense cluster ids 0..m-1 for the labels present.
  std::vector<std::int32_t> sorted(labels);
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  const auto m = static_cast<std::int64_t>(sorted.size());
  if (m < 2 || m > n - 1) return 0.0;
  std::vector<std::int32_t> dense(static_cast<std::size_t>(n));
  std::vector<double> counts(static_cast<std::size_t>(m), 0.0);
  for (std::int64_t i = 0; i < n; ++i) {
    dense[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(
        std::lower_bound(sorted.begin(), sorted.end(), labels[static_cast<std::size_t>(i)]) - sorted.begin());
    counts[static_cast<std::size_t>(dense[static_cast<std::size_t>(i)])] += 1.0;
  }
  std::vector<double> self(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) self[static_cast<std::size_t>(i)] = kernel.self(i);
  std::vector<double> score(static_cast<std::size_t>(n));
  tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, n, 64), [&](const tbb::blocked_range<std::int64_t>& rows) {
    std::vector<double> distance(static_cast<std::size_t>(n)), sums(static_cast<std::size_t>(m));
    for (std::int64_t i = rows.begin(); i != rows.end(); ++i) {
      const auto* column = kernel.column(i);
      const double si = self[static_cast<std::size_t>(i)];
      for (std::int64_t j = 0; j < n; ++j) {
        distance[static_cast<std::size_t>(j)] =
            std::sqrt(std::max(0.0, si + self[static_cast<std::size_t>(j)] - 2.0 * static_cast<double>(column[j])));
      }
      distance[static_cast<std::size_t>(i)] = 0.0;
      std::fill(sums.begin(), sums.end(), 0.0);
      for (std::int64_t j = 0; j < n; ++j) sums[static_cast<std::size_t>(dense[static_cast<std::size_t>(j)])] += distance[static_cast<std::size_t>(j)];
      const auto own = static_cast<std::size_t>(dense[static_cast<std::size_t>(i)]);
      if (counts[own] < 2) {
        score[static_cast<std::size_t>(i)] = 0.0;  // scikit-learn: singletons score 0
        continue;
      }
      const double intra = sums[own] / (counts[own] - 1.0);
      double inter = std::numeric_limits<double>::infinity();
      for (std::size_t c = 0; c < sums.size(); ++c) {
        if (c != own) inter = std::min(inter, sums[c] / counts[c]);
      }
      const double s = (inter - intra) / std::max(intra, inter);
      score[static_cast<std::size_t>(i)] = std::isfinite(s) ? s : 0.0;
    }
  });
  return std::accumulate(score.begin(), score.end(), 0.0) / static_cast<double>(n);
}

}  // namespace

KMeansFit kmeans_fit(const Correlation& corr, int k, int n_init, std::uint64_t seed, bool refine) {
  const std::int64_t n = corr.r.rows();
  if (k < 1 || k > n) throw UsageError("kmeans: k = " + std::to_string(k) + " must be in [1, " + std::to_string(n) + "]");
  return corr.r.visit([&](const auto& r) { return fit(r, corr, k, n_init, seed, refine); });
}

KMeansFit kmeans_refine(const Correlation& corr, std::vector<std::int32_t> labels, int k) {
  if (static_cast<std::int64_t>(labels.size()) != corr.r.rows()) throw UsageError("kmeans_refine: one label per neuron");
  for (const auto l : labels) {
    if (l < 0 || l >= k) throw UsageError("kmeans_refine: labels must be in [0, " + std::to_string(k) + ")");
  }
  return corr.r.visit([&](const auto& r) { return refine_labels(r, corr, std::move(labels), k); });
}

double silhouette_score(const Correlation& corr, const std::vector<std::int32_t>& labels) {
  if (static_cast<std::int64_t>(labels.size()) != corr.r.rows()) throw UsageError("silhouette_score: one label per neuron");
  return corr.r.visit([&](const auto& r) { return silhouette(r, corr, labels); });
}

GroupingResult kmeans_groups(const Correlation& corr, int n_groups, int n_init, std::uint64_t seed, int min_group_size) {
  const std::int64_t n = corr.r.rows();
  auto distinct = [](std::vector<std::int32_t> labels) {
    std::sort(labels.begin(), labels.end());
    return std::unique(labels.begin(), labels.end()) - labels.begin();
  };
  KMeansFit best;
  int best_k = 0;
  double best_score = -std::numeric_limits<double>::infinity();
  std::vector<std::pair<int, double>> scores;
  if (n_groups > 0) {
    if (n_groups <= n) {
      best = kmeans_fit(corr, n_groups, n_init, seed);
      best_k = n_groups;
    }
  } else {
    for (int k = 2; k <= std::min<std::int64_t>(kMaxAutoK, n - 1); ++k) {
      KMeansFit candidate = kmeans_fit(corr, k, n_init, seed);
      if (distinct(candidate.labels) < 2) continue;
      const double score = silhouette_score(corr, candidate.labels);
      scores.emplace_back(k, score);
      if (best_k == 0 || score > best_score) {
        best_score = score;
        best_k = k;
        best = std::move(candidate);
      }
    }
  }
  GroupingResult out = best_k > 0 ? finish_groups(corr, best.labels, min_group_size)
                                  : finish_groups(corr, std::vector<std::vector<std::int32_t>>{}, min_group_size);
  out.chosen_k = best_k;
  out.inertia = best.inertia;
  out.n_iter = best.n_iter;
  out.silhouette_by_k = std::move(scores);
  return out;
}

}  // namespace neuronmap::detail
