// One writer per run file: a session holds an advisory lock on `<run file>.lock` for its whole life.
#pragma once

#include <string>

namespace neuronmap::detail {

/// What a reader can learn about a run file's writer without taking or changing anything.
struct WriterState {
  bool held = false;  ///< a live process holds the lock now
  long pid = 0;       ///< the holder's process id as it wrote it (0 when unknown)
  std::string program;
};

/// An exclusive open-file-description lock (fcntl F_OFD_SETLK) on `<path>.lock`, which holds the
/// holder's pid and program name. The kernel drops it when the holder dies, so a lock left by a killed
/// process never blocks; two sessions conflict even inside one process. Move-only RAII.
class RunLock {
 public:
  /// Takes the lock; throws FileError naming the process that holds it, or when it cannot be created
  /// (creates the file's directory if missing).
  explicit RunLock(const std::string& run_path);
  RunLock(RunLock&& other) noexcept;
  RunLock& operator=(RunLock&& other) noexcept;
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;
  /// Removes the lock file, then releases the lock.
  ~RunLock();

  static std::string lock_path(const std::string& run_path);
  /// Read-only: opens the lock file without writing and asks the kernel whether it is locked.
  static WriterState probe(const std::string& run_path);

 private:
  void release() noexcept;
  std::string path_;
  int fd_ = -1;
};

}  // namespace neuronmap::detail
