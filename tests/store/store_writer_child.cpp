// A writer process for the crash tests: appends sample snapshots and prints "writing <i>" before and
// "committed <i> <microseconds>" (flushed) after each append, so the parent knows what must survive a
// kill and can aim a kill into the middle of the next append.
//   store_writer_child PATH [--count N] [--stdin] [--fsize BYTES] [--io-error-after N] [--scale K] [--lock]
// --count N: stop after N snapshots (default: never); --stdin: then append one more per input line
// until EOF; --fsize: limit the file size (RLIMIT_FSIZE, SIGXFSZ ignored) to simulate a full disk;
// --lock: hold the run file's lock for the process's life, as a session does (store/run_lock.hpp);
// --io-error-after N: after N snapshots every pwrite to PATH fails with EIO, as on a dying disk (the writer's
// space reservation, posix_fallocate, still succeeds); --scale K: K times wider fc1 layers.
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>

#include "neuronmap/errors.hpp"
#include "sample_run.hpp"
#include "store/run_file.hpp"
#include "store/run_lock.hpp"

namespace {
std::atomic<ino_t> g_failing_inode{0};  // writes to this file fail
}

// The executable's pwrite interposes libc's for libhdf5 (exported with ENABLE_EXPORTS).
extern "C" ssize_t pwrite(int fd, const void* buf, size_t count, off_t offset) {
  struct stat st {};
  if (g_failing_inode.load() != 0 && ::fstat(fd, &st) == 0 && st.st_ino == g_failing_inode.load()) {
    errno = EIO;
    return -1;
  }
  return static_cast<ssize_t>(::syscall(SYS_pwrite64, fd, buf, count, offset));
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s PATH [--count N] [--stdin] [--fsize BYTES] [--io-error-after N] [--scale K]\n", argv[0]);
    return 64;
  }
  const std::string path = argv[1];
  long long count = -1, fsize = -1, scale = 1, io_error_after = -1;
  bool from_stdin = false, lock = false;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--count" && i + 1 < argc) count = std::atoll(argv[++i]);
    else if (arg == "--fsize" && i + 1 < argc) fsize = std::atoll(argv[++i]);
    else if (arg == "--scale" && i + 1 < argc) scale = std::atoll(argv[++i]);
    else if (arg == "--io-error-after" && i + 1 < argc) io_error_after = std::atoll(argv[++i]);
    else if (arg == "--stdin") from_stdin = true;
    else if (arg == "--lock") lock = true;
    else {
      std::fprintf(stderr, "unknown argument %s\n", arg.c_str());
      return 64;
    }
  }
  if (fsize >= 0) {
    std::signal(SIGXFSZ, SIG_IGN);
    rlimit limit{static_cast<rlim_t>(fsize), static_cast<rlim_t>(fsize)};
    if (setrlimit(RLIMIT_FSIZE, &limit) != 0) {
      std::perror("setrlimit");
      return 65;
    }
  }
  std::optional<neuronmap::detail::RunLock> held;
  std::unique_ptr<neuronmap::detail::RunWriter> writer;
  try {
    if (lock) held.emplace(path);
    writer = std::make_unique<neuronmap::detail::RunWriter>(path, neuronmap::test::sample_info(), true);
  } catch (const std::exception& e) {
    std::printf("create-failed %s\n", e.what());
    return 5;
  }
  std::printf("created\n");
  std::fflush(stdout);

  long long i = 0;
  auto append_one = [&]() -> bool {
    if (i == io_error_after) {
      struct stat st {};
      if (::stat(path.c_str(), &st) != 0) std::exit(6);
      g_failing_inode = st.st_ino;
    }
    const auto snapshot = neuronmap::test::sample_snapshot(i, scale);
    std::printf("writing %lld\n", i);
    std::fflush(stdout);
    const auto start = std::chrono::steady_clock::now();
    try {
      writer->append(snapshot);
    } catch (const neuronmap::FileError& e) {
      std::printf("failed %s\n", e.what());
      std::fflush(stdout);
      return false;
    }
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count();
    std::printf("committed %lld %lld\n", i++, static_cast<long long>(us));
    std::fflush(stdout);
    return true;
  };
  bool ok = true;
  while (ok && (count < 0 || i < count)) ok = append_one();
  if (ok && from_stdin) {
    std::string line;
    while (ok && std::getline(std::cin, line)) ok = append_one();
  }
  if (!ok) {
    // A second try must fail the same way and leave the file as readable as the first.
    if (append_one()) std::printf("retry-succeeded\n");
  }
  try {
    writer->close();
    std::printf("closed\n");
  } catch (const std::exception& e) {
    std::printf("close-failed %s\n", e.what());
  }
  std::fflush(stdout);
  return ok ? 0 : 3;
}
