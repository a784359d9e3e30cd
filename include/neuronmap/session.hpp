// attach() and Session: probes on a live model, feeding background workers that write snapshots.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "neuronmap/fwd.hpp"
#include "neuronmap/options.hpp"
#include "neuronmap/snapshot.hpp"

namespace at {
class Tensor;
}

namespace neuronmap {

namespace detail {
class SessionImpl;
struct SessionAccess;
}  // namespace detail

/// A running instrumentation of one model, made by attach(). Move-only; the destructor detaches the
/// probes, drains the queue, writes the pending snapshot and closes the run file (see close()).
///
/// Threads: attach() creates the run file on the calling thread, so that a FileError reaches the
/// caller of attach(); close() (or the destructor) closes it on the thread that calls it. In between,
/// one snapshot thread per session appends the snapshots (docs/ARCHITECTURE.md). In a distributed
/// session only rank 0 creates, writes and closes the file.
class Session {
 public:
  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session();

  /// The epoch callback: call once after each training epoch, epochs strictly increasing, from the
  /// training thread. At a snapshot epoch (a multiple of Options::every) it closes the epoch's capture
  /// window and hands it to the snapshot thread, which analyses it and appends a snapshot to the run
  /// file in the background; other epochs only switch the probes on or off. It blocks at a snapshot
  /// epoch in two cases only:
  /// - distributed (Options::communicator): it waits until this rank's workers have processed every
  ///   batch queued in the epoch, then for the gather to rank 0 (every rank must arrive, or the
  ///   communicator's timeout passes);
  /// - with a reference batch (set_reference): it runs that forward pass on the calling thread.
  /// Otherwise it returns without waiting for the workers or the analysis (flush() waits).
  /// Throws UsageError if `epoch` does not increase, or after close().
  void end_epoch(std::int64_t epoch, double loss = std::numeric_limits<double>::quiet_NaN());

  /// Per-sample information about the forward pass that just ran: its per-sample loss (e.g.
  /// cross_entropy with reduction none; may be undefined/empty) and a tag per sample (an index into
  /// Options::tag_names, -1 for none; may be empty). Call once after each forward of a captured
  /// epoch; outside captured epochs it costs nothing. Feeds skill categories and loss correlations.
  void observe(const at::Tensor& per_sample_loss, const std::vector<std::int32_t>& tags = {});
  void observe(std::vector<float> per_sample_loss, std::vector<std::int32_t> tags);

  /// A function that runs the model on a fixed reference batch, e.g. `[&] { model->forward(x_ref); }`.
  /// At every snapshot epoch the session runs it once (no grad, on the thread that calls end_epoch);
  /// the layers' outputs on it give the CKA between consecutive snapshots.
  void set_reference(std::function<void()> forward);

  /// Blocks until every snapshot requested so far is written (or failed: see last_error()).
  void flush();

  /// Detaches the probes, drains the queue, writes what is pending and closes the run file, on the
  /// calling thread. Idempotent. Errors are reported by last_error(), never thrown.
  void close() noexcept;

  /// Counters summed over layers and epochs so far. Safe from any thread.
  Counters counters() const;
  /// Snapshots committed to the run file so far.
  std::int64_t snapshots_written() const;
  /// The first error a probe, worker or the writer met ("" if none). Training never sees it thrown.
  std::string last_error() const;
  /// The probed layers, in the order given to attach().
  std::vector<std::string> layers() const;
  /// The run file.
  std::string file() const;
  /// Whether the probes copy outputs in the current epoch.
  bool capturing() const;

 private:
  // Every attach() overload (C++ modules, TorchScript, Python) builds its Session through this one friend.
  friend struct detail::SessionAccess;
  explicit Session(std::unique_ptr<detail::SessionImpl> impl) noexcept;
  std::unique_ptr<detail::SessionImpl> impl_;
};

/// Attaches probes to the named submodules of a live C++ frontend model (names as `named_modules()`
/// gives them, e.g. "fc1", "features.3"). The model's source is not changed.
/// Throws LayerNotFound (listing the valid names), UnsupportedModule, UsageError or FileError.
Session attach(torch::nn::Module& model, const std::vector<std::string>& layers, Options options = {});

}  // namespace neuronmap
