// One layer's statistics reduced on the device its outputs live on (Options::reduce_on_device, and
// every output on an accelerator): the training thread runs a few ATen ops per batch instead of
// copying the batch's rows to the host, and only N x N / N-sized totals, plus the rows the reservoir
// may keep, cross to the host when the totals are taken (every kFlushBatches batches and at
// end_epoch). What is taken is a LayerAccumulator that a worker merges like any other (Chan's update,
// the reservoir's bottom-k merge), so the statistics are those of the worker path within rounding.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

namespace at {
class Tensor;
}

namespace neuronmap::detail {

struct LayerAccumulator;

class DeviceReduction {
 public:
  /// Batches reduced between two hand-overs of the totals: each hand-over waits for the device (one
  /// synchronisation) and costs the worker one merge of N(N+1)/2 terms.
  static constexpr std::int64_t kFlushBatches = 32;
  /// Widest layer reduced on the device: its N x N float64 totals take 128 MiB of device memory there.
  /// Wider layers are copied to the host as before (a GPU's memory is the training's).
  static constexpr std::int64_t kMaxNeurons = 4096;

  struct Settings {
    std::int64_t reservoir_size = 0;
    std::uint64_t seed = 0;
    bool float32_products = false;  ///< Options::products(Products::float32): each batch's product in float32
    int world = 1;                  ///< a distributed session's size and this process's rank: sample ids
    int rank = 0;                   ///< are `ordinal * world + rank`, as the workers number them
  };

  explicit DeviceReduction(Settings settings);
  ~DeviceReduction();
  DeviceReduction(const DeviceReduction&) = delete;
  DeviceReduction& operator=(const DeviceReduction&) = delete;

  /// Adds the layer's `ordinal`-th batch of capture window `window`: `rows` [R, N] on any device.
  /// Rows holding NaN or Inf are left out, as the workers leave them out. A batch of another window
  /// than the pending totals' resets them (take() them first).
  void add(const at::Tensor& rows, std::int64_t ordinal, std::vector<std::int64_t> output_shape, const void* window);
  /// Adds one batch of gradient rows: |dL/da| and a x dL/da, each [R, N]; a batch with NaN or Inf is
  /// left out whole, as the workers leave it out.
  void add_gradient(const at::Tensor& abs_gradient, const at::Tensor& product, const void* window);

  /// Batches added since the last take(), and rows waiting on the device for the reservoir.
  std::int64_t pending_batches() const noexcept;
  std::int64_t pending_candidate_rows() const noexcept;
  const void* window() const noexcept;

  /// The totals since the last take(), on the host; resets them. Waits for the device.
  std::shared_ptr<LayerAccumulator> take();
  /// Drops the pending totals (their window closed before they could be handed over).
  void discard() noexcept;

 private:
  struct Totals;
  Settings settings_;
  std::unique_ptr<Totals> totals_;
};

}  // namespace neuronmap::detail
