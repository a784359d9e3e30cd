// Run: reads a run file, also while a training process is still appending to it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "neuronmap/snapshot.hpp"

namespace neuronmap {

namespace detail {
class RunReader;
}

/// A group's scores without its members (Group has the whole record).
struct GroupSummary {
  int group_id = 0;
  std::int64_t size = 0;
  double cohesion_score = 0.0;
  double min_member_correlation = 0.0;  ///< NaN in files older than format 4
  bool loose = false;                   ///< cohesion below the grouping threshold (see Group::loose)
};

/// A one-line summary per snapshot and layer, cheap to read: a LayerSnapshot without its matrices,
/// reservoir or group members (what `neuronmap inspect` prints).
struct LayerSummary {
  std::string name;
  std::int64_t n_neurons = 0;
  std::int64_t samples = 0;
  std::int64_t groups = 0;
  double mean_cohesion = 0.0;
  std::int64_t dead = 0;
  Counters counters;
  std::int64_t reference_rows = 0;  ///< rows of the reference batch stored (format_version >= 3); last, so
                                    ///< that aggregate initialisers written before it still compile
  std::vector<GroupSummary> group_summaries{};  ///< one per group, in group order

  std::int64_t loose_groups() const noexcept {
    std::int64_t n = 0;
    for (const auto& g : group_summaries) n += g.loose;
    return n;
  }
};

/// A Snapshot without its matrices (Run::summary).
struct SnapshotSummary {
  std::int64_t epoch = 0;
  double loss = 0.0;
  double timestamp = 0.0;
  std::vector<LayerSummary> layers;
};

/// A run file opened for reading (SWMR: a writer may still be appending). Move-only.
class Run {
 public:
  /// Throws FileError (missing, unreadable, truncated) or FormatError (foreign, damaged, newer format).
  static Run open(const std::string& path);

  Run(Run&&) noexcept;
  Run& operator=(Run&&) noexcept;
  ~Run();

  const RunInfo& info() const;
  /// Committed snapshots when the file was opened or last refreshed.
  std::int64_t size() const;
  /// Re-reads the commit record; returns the new size (only grows).
  std::int64_t refresh();
  SnapshotSummary summary(std::int64_t index) const;
  /// The full snapshot `index` (0-based, < size()).
  Snapshot snapshot(std::int64_t index) const;

 private:
  explicit Run(std::unique_ptr<detail::RunReader> reader);
  std::unique_ptr<detail::RunReader> reader_;
};

}  // namespace neuronmap
