// What `neuronmap serve` shares between its follower thread (the only one that reads the file) and
// the HTTP threads: the published state, a cache of rendered snapshots bounded in bytes, and a queue
// of read requests for the follower.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "cli/live_run.hpp"

namespace neuronmap::cli {

using Text = std::shared_ptr<const std::string>;

/// Rendered JSON by (kind, snapshot index): over `budget` bytes, the least recently used entry that is
/// not pinned goes first. Pinned entries (the snapshot summaries: the last good state, which must stay
/// servable when the file goes bad) are never evicted; they count towards bytes().
class ByteCache {
 public:
  explicit ByteCache(std::size_t budget) : budget_(budget) {}
  Text get(int kind, std::int64_t index);
  void put(int kind, std::int64_t index, Text text, bool pinned = false);
  void clear();
  std::size_t bytes() const noexcept { return bytes_; }

 private:
  using Key = std::pair<int, std::int64_t>;
  std::size_t budget_;
  std::size_t bytes_ = 0;
  std::list<Key> order_;  // unpinned entries, front: most recent; pinned ones point at order_.end()
  std::map<Key, std::pair<Text, std::list<Key>::iterator>> entries_;
};

struct HubOptions {
  std::chrono::milliseconds poll{100};      ///< how often the file is looked at (<= 250 ms)
  std::size_t cache_bytes = 64u << 20;      ///< rendered snapshots kept in memory
  std::int64_t detail_cells = 160;          ///< matrix cells per side in a snapshot's detail
};

/// The state as HTTP handlers see it.
struct HubView {
  std::uint64_t generation = 0;
  std::int64_t snapshots = 0;  ///< published (rendered) snapshots
  bool ready = false;          ///< a run file was read at least once
  std::uint64_t status_sequence = 0;
  bool stopping = false;
};

class LiveHub {
 public:
  LiveHub(std::string path, HubOptions options);
  ~LiveHub();
  LiveHub(const LiveHub&) = delete;
  LiveHub& operator=(const LiveHub&) = delete;

  /// Polls once (so that the first page already has the run), then starts the follower thread.
  void start();
  void stop();

  HubView view() const;
  /// Waits at most `timeout` for anything newer than `seen`; returns the view then.
  HubView wait(const HubView& seen, std::chrono::milliseconds timeout) const;
  std::string status_json() const;
  /// The run's JSON (null before the file was read).
  Text run_json() const;
  /// Snapshot `index` of generation `generation` (null when it is not published or the run changed).
  Text snapshot(std::uint64_t generation, std::int64_t index);
  Text detail(std::uint64_t generation, std::int64_t index);
  std::size_t cache_bytes() const;

 private:
  struct Job {
    int kind;
    std::uint64_t generation;
    std::int64_t index;
    std::promise<Text> result;
  };
  Text fetch(int kind, std::uint64_t generation, std::int64_t index);
  Text render(int kind, std::int64_t index);
  void follow();
  void poll_once();
  void run_jobs();

  HubOptions options_;
  LiveRun run_;  // follower thread only (and start() before it exists)
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::condition_variable jobs_changed_;
  ByteCache cache_;
  std::deque<Job> jobs_;
  HubView view_;
  Text run_json_;
  LiveStatus status_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace neuronmap::cli
