// Option names and validation.
#include "neuronmap/options.hpp"
#include "neuronmap/group.hpp"

#include <string>

#include "neuronmap/errors.hpp"

namespace neuronmap {

const char* to_string(Overflow value) noexcept {
  return value == Overflow::block ? "block" : "drop_newest";
}
const char* to_string(Products value) noexcept {
  return value == Products::float64 ? "float64" : "float32";
}
const char* to_string(WorkerPriority value) noexcept {
  return value == WorkerPriority::idle ? "idle" : "normal";
}
const char* to_string(SpatialReduction value) noexcept {
  return value == SpatialReduction::mean ? "mean" : "max";
}
const char* to_string(SequenceReduction value) noexcept {
  return value == SequenceReduction::per_token ? "per_token" : "mean_over_time";
}
const char* to_string(GroupingMethod value) noexcept {
  switch (value) {
    case GroupingMethod::correlation: return "correlation";
    case GroupingMethod::kmeans: return "kmeans";
    case GroupingMethod::hierarchical: return "hierarchical";
    case GroupingMethod::components: return "components";
  }
  return "unknown";
}

void Options::validate() const {
  auto fail = [](const std::string& what) { throw UsageError("invalid Options: " + what); };
  if (every_ < 1) fail("every(" + std::to_string(every_) + "): must be >= 1");
  if (file_.empty()) fail("file(\"\"): give a path for the run file");
  if (queue_capacity_ < 1) fail("queue_capacity(" + std::to_string(queue_capacity_) + "): must be >= 1");
  if (workers_ < 1) fail("workers(" + std::to_string(workers_) + "): must be >= 1");
  if (analysis_threads_ < 1) fail("analysis_threads(" + std::to_string(analysis_threads_) + "): must be >= 1");
  if (max_batches_ < 0) fail("max_batches(" + std::to_string(max_batches_) + "): must be >= 0 (0 = all)");
  if (!(overhead_budget_ >= 0.0 && overhead_budget_ <= 100.0))
    fail("overhead_budget(" + std::to_string(overhead_budget_) + "): must be a fraction >= 0 (0 = no limit), e.g. 0.05");
  if (reduce_on_device_ && transform_)
    fail("reduce_on_device(true) with a transform: the transform needs each batch's rows on the host; "
         "drop one of them");
  if (reservoir_size_ < 0) fail("reservoir_size(" + std::to_string(reservoir_size_) + "): must be >= 0");
  if (!(grouping_.threshold >= -1.0 && grouping_.threshold <= 1.0))
    fail("threshold(" + std::to_string(grouping_.threshold) + "): must be in [-1, 1]");
  if (grouping_.min_group_size < 1)
    fail("min_group_size(" + std::to_string(grouping_.min_group_size) + "): must be >= 1");
  if (grouping_.n_groups < 0) fail("grouping.n_groups: must be >= 0 (0 = automatic)");
  if (grouping_.n_init < 1) fail("grouping.n_init: must be >= 1");
}

}  // namespace neuronmap
