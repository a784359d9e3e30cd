// Options: every knob of a session, each with a sane default, set with fluent setters.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "neuronmap/communicator.hpp"
#include "neuronmap/detail/communicator.hpp"
#include "neuronmap/group.hpp"

namespace neuronmap {

/// What a probe does when the queue to the workers is full.
enum class Overflow {
  block,        ///< wait until a worker frees a slot: loses nothing, may slow training
  drop_newest,  ///< drop the batch being captured and count it: training never waits
};

/// How an output [B, C, spatial...] becomes B samples x C neurons.
enum class SpatialReduction { mean, max };

/// How an output [B, T, D] (sequence models) becomes samples x D neurons.
enum class SequenceReduction {
  per_token,       ///< B*T samples
  mean_over_time,  ///< B samples, the mean over T
};

/// How the worker threads are scheduled.
enum class WorkerPriority {
  normal,  ///< the default policy of the process, as the training's threads
  idle,    ///< Linux SCHED_IDLE while their queue is less than half full: they run only on cores nothing
           ///< else wants (on a machine busy with other work they wait for a fuller queue)
};

/// The precision of each captured batch's centred product before it joins the float64 totals.
enum class Products {
  float64,  ///< dsyrk on float64 values: exact (the default)
  float32,  ///< ssyrk on float32 centred values, merged into float64 totals: about half the cost
};

/// A captured batch as the workers see it: `rows` samples x `cols` neurons, row-major float32.
/// A user transform may change the values in place (e.g. L2-normalise rows).
struct RowsView {
  const std::string& layer;
  float* data;
  std::int64_t rows;
  std::int64_t cols;
  float& operator()(std::int64_t r, std::int64_t c) const { return data[r * cols + c]; }
};

/// A function applied to every captured batch on a worker thread, never on the training thread.
using Transform = std::function<void(RowsView&)>;

#define NEURONMAP_OPTION(type, name, default_value)        \
 public:                                                   \
  Options& name(type value) & {                            \
    name##_ = std::move(value);                            \
    return *this;                                          \
  }                                                        \
  Options&& name(type value) && {                          \
    name##_ = std::move(value);                            \
    return std::move(*this);                               \
  }                                                        \
  const type& name() const noexcept { return name##_; }    \
                                                           \
 private:                                                  \
  type name##_ = default_value

/// Session options. `Options{}` works as it is: a snapshot every 5 epochs into outputs/run.h5.
class Options {
  /// Snapshot (and capture) every N-th epoch: epochs N, 2N, 3N, ...
  NEURONMAP_OPTION(int, every, 5);
  /// The run file (one HDF5 file per run).
  NEURONMAP_OPTION(std::string, file, "outputs/run.h5");
  /// Replace an existing run file; without it attach() refuses an existing path.
  NEURONMAP_OPTION(bool, overwrite, false);
  /// Batches that may wait in the queue between the probes and the workers.
  NEURONMAP_OPTION(std::int64_t, queue_capacity, 64);
  /// What a probe does when the queue is full.
  NEURONMAP_OPTION(Overflow, overflow, Overflow::block);
  /// Worker threads that accumulate statistics.
  NEURONMAP_OPTION(int, workers, 1);
  /// `idle` lets the training's threads, LibTorch's BLAS threads among them, preempt the workers at
  /// once (docs/PERFORMANCE.md): for a machine that runs nothing but the training.
  NEURONMAP_OPTION(WorkerPriority, worker_priority, WorkerPriority::normal);
  /// Threads the analysis (correlation, grouping) may use.
  NEURONMAP_OPTION(int, analysis_threads, 1);
  /// Precision of each batch's co-moment product; the totals are float64 either way
  /// (docs/PERFORMANCE.md gives the measured error of float32).
  NEURONMAP_OPTION(Products, products, Products::float64);
  /// The training-step slowdown a captured epoch may cost, e.g. 0.05; 0 = no limit (every batch).
  /// Within it the session captures every k-th forward pass, k adapted to the measured cost
  /// (docs/PERFORMANCE.md); statistics stay exact over the passes captured, and the others are counted
  /// (Counters::budget_skipped_batches).
  NEURONMAP_OPTION(double, overhead_budget, 0.0);
  /// Reduce every captured output on its own device (count, sums, co-moment, min/max, the reservoir's
  /// candidate rows, with ATen ops on the training thread) and hand the workers only the N x N totals,
  /// every 32 batches and at end_epoch (docs/PERFORMANCE.md). Outputs on an accelerator (CUDA) are
  /// reduced there whatever this says; `true` makes CPU outputs take the same path. Attention layers
  /// keep the worker path (their head statistics need the weights), and so do layers wider than 4,096
  /// neurons (their totals would take the device's memory); not with a transform.
  NEURONMAP_OPTION(bool, reduce_on_device, false);
  /// Batches captured per captured epoch (per layer); 0 = all.
  NEURONMAP_OPTION(std::int64_t, max_batches, 0);
  /// [B, C, spatial...] outputs: spatial mean or max per channel.
  NEURONMAP_OPTION(SpatialReduction, spatial, SpatialReduction::mean);
  /// [B, T, D] outputs: one sample per token, or the mean over time.
  NEURONMAP_OPTION(SequenceReduction, sequence, SequenceReduction::per_token);
  /// How neurons are grouped.
  NEURONMAP_OPTION(Grouping, grouping, Grouping{});
  /// Applied to each captured batch on a worker (not the training thread).
  NEURONMAP_OPTION(Transform, transform, nullptr);
  /// Sample rows kept per layer and snapshot (a uniform reservoir; feeds activation patterns).
  NEURONMAP_OPTION(std::int64_t, reservoir_size, 2048);
  /// Seed of the reservoir's sampling.
  NEURONMAP_OPTION(std::uint64_t, seed, 42);
  /// Names of the sample tags given to Session::observe (e.g. {"mathematical", "linguistic"}).
  NEURONMAP_OPTION(std::vector<std::string>, tag_names, {});
  /// Also capture dLoss/dActivation of every probed layer during backward (per-neuron mean |gradient|
  /// and Taylor importance, mean of activation x gradient).
  NEURONMAP_OPTION(bool, gradients, false);
  /// Store the full correlation matrix per layer and snapshot (N x N float32).
  NEURONMAP_OPTION(bool, store_correlation, true);
  /// Data-parallel training: the ranks' statistics are combined at each snapshot and rank 0 alone
  /// writes the file (docs/DISTRIBUTED.md). Usually set through process_group(pg); implement
  /// Communicator (neuronmap/communicator.hpp) for another transport, e.g. MPI.
  NEURONMAP_OPTION(std::shared_ptr<Communicator>, communicator, nullptr);

 public:
  /// Shorthands for the grouping parameters most users set.
  Options& threshold(double value) & {
    grouping_.threshold = value;
    return *this;
  }
  Options&& threshold(double value) && { return std::move(threshold(value)); }
  Options& min_group_size(int value) & {
    grouping_.min_group_size = value;
    return *this;
  }
  Options&& min_group_size(int value) && { return std::move(min_group_size(value)); }
  /// `Options{}.process_group(pg)`: `pg` a c10::intrusive_ptr to a c10d::ProcessGroup (Gloo). Needs
  /// #include <neuronmap/distributed.hpp> and the NeuronMap::distributed library.
  template <typename ProcessGroup>
  Options& process_group(ProcessGroup group) & {
    communicator_ = detail::MakeCommunicator<ProcessGroup>::make(std::move(group));
    return *this;
  }
  template <typename ProcessGroup>
  Options&& process_group(ProcessGroup group) && {
    return std::move(process_group(std::move(group)));
  }

  /// Throws UsageError naming the first option that is out of range.
  void validate() const;
};

#undef NEURONMAP_OPTION

const char* to_string(Overflow value) noexcept;
const char* to_string(Products value) noexcept;
const char* to_string(WorkerPriority value) noexcept;
const char* to_string(SpatialReduction value) noexcept;
const char* to_string(SequenceReduction value) noexcept;

}  // namespace neuronmap
