// The run file: one HDF5 file per run, appended under SWMR so that a kill at any moment keeps every
// committed snapshot and other processes can read while training writes. Layout: docs/FORMAT.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "neuronmap/run.hpp"
#include "neuronmap/snapshot.hpp"

namespace neuronmap::detail {

/// Writes one run file. Not thread-safe: exactly one thread calls it (the session's writer thread).
class RunWriter {
 public:
  /// Throws FileError unless `path` could be created: its directory is created if missing; an
  /// existing file is refused unless `overwrite`. Call on the attaching thread so errors surface there.
  static void check_path(const std::string& path, bool overwrite);

  /// Creates the file's skeleton with `info` as static metadata (written to `<path>.tmp`, fsynced,
  /// renamed) and opens it for SWMR appending. Throws FileError.
  RunWriter(const std::string& path, const RunInfo& info, bool overwrite);
  ~RunWriter();
  RunWriter(const RunWriter&) = delete;
  RunWriter& operator=(const RunWriter&) = delete;

  /// Appends one snapshot; it exists in the file once this returns (its commit row is written last).
  /// Throws FileError (e.g. disk full); snapshots appended before stay intact.
  void append(const Snapshot& snapshot);
  std::int64_t size() const noexcept;
  /// Closes the file; idempotent. Throws FileError if the final flush fails.
  void close();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

/// The reader behind neuronmap::Run.
class RunReader {
 public:
  explicit RunReader(const std::string& path);  // throws FileError / FormatError
  ~RunReader();
  const RunInfo& info() const noexcept;
  std::int64_t size() const noexcept;
  std::int64_t refresh();
  SnapshotSummary summary(std::int64_t index) const;
  Snapshot snapshot(std::int64_t index) const;
  /// Snapshot `index` without its layers (cheap): epoch, loss, timestamp, phase, events, layer_cka and
  /// the loss curve. Used by `neuronmap inspect`.
  Snapshot snapshot_header(std::int64_t index) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace neuronmap::detail
