// Following a run file while another process writes it: incremental SWMR reads, and what happened
// to the file (replaced by a new run, deleted, truncated or damaged, its writer gone). One thread
// only: HDF5 (Debian's serial build) must not be called from two threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "neuronmap/run.hpp"
#include "store/run_lock.hpp"

namespace neuronmap::detail {
class RunReader;
}

namespace neuronmap::cli {

/// The state of the followed file, as `serve` reports it.
enum class FileState { waiting, ok, deleted, error };
const char* to_string(FileState state);

struct LiveStatus {
  FileState file = FileState::waiting;
  std::string message;           ///< why the file is in `deleted`/`error`/`waiting` (empty when ok)
  std::uint64_t generation = 0;  ///< one more each time the path names a new run file
  std::int64_t snapshots = 0;    ///< committed snapshots read so far (the last good state)
  double last_commit = 0;        ///< the newest commit row's timestamp (0 without snapshots)
  double last_change = 0;        ///< wall-clock seconds when the file last grew or changed
  detail::WriterState writer;    ///< who holds the file's lock now
};

/// What one poll found.
struct PollResult {
  std::int64_t first_new = 0;  ///< new snapshots are [first_new, end)
  std::int64_t end = 0;
  bool replaced = false;       ///< a new run file took the path: indices start again at 0
  bool status_changed = false;
};

class LiveRun {
 public:
  explicit LiveRun(std::string path);
  ~LiveRun();
  LiveRun(const LiveRun&) = delete;
  LiveRun& operator=(const LiveRun&) = delete;

  /// Looks at the file once: new commits, replacement, deletion, damage, the writer's lock. Never throws.
  PollResult poll();
  const LiveStatus& status() const noexcept { return status_; }
  const std::string& path() const noexcept { return path_; }
  /// Null until the file was opened once.
  const RunInfo* info() const noexcept;

  /// `inspect --json`'s top-level object without its snapshots (and with "size").
  std::string run_json() const;
  /// Snapshot `index` as `inspect --json` writes it, plus per layer cka_previous and dormant_rate and
  /// the snapshot's loss curve (loss_epochs, losses). Throws neuronmap::Error.
  std::string snapshot_json(std::int64_t index) const;
  /// The reader (null until the file was opened once); only committed snapshots below
  /// status().snapshots may be read through it.
  const detail::RunReader* reader() const noexcept { return reader_.get(); }
  /// One line of text per snapshot for `inspect --follow`.
  std::string snapshot_line(std::int64_t index) const;

 private:
  bool open_reader(std::string& error);
  void set_state(FileState state, std::string message, PollResult& result);

  std::string path_;
  std::unique_ptr<detail::RunReader> reader_;
  std::uint64_t device_ = 0, inode_ = 0;
  std::int64_t file_size_ = -1;
  std::int64_t file_mtime_ns_ = -1;
  bool had_file_ = false;  // a run file was read at this path once (a new inode is then a new run)
  double last_reopen_try_ = 0;
  LiveStatus status_;
};

/// Seconds since the Unix epoch (wall clock, as the commit rows' timestamps).
double wall_seconds();

}  // namespace neuronmap::cli
