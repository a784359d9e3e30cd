// RunLock: one writer per run file, held for the writer's life, never blocking after its holder died.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "neuronmap/errors.hpp"
#include "store/run_lock.hpp"
#include "test_dir.hpp"

namespace fs = std::filesystem;
using neuronmap::FileError;
using neuronmap::detail::RunLock;

namespace {

std::string error_of(const std::string& path) {
  try {
    RunLock lock(path);
  } catch (const FileError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(RunLock, SecondHolderInOneProcessIsRefusedAndTheFirstKeepsIt) {
  const std::string path = neuronmap::test::fresh_test_dir("store_tmp") + "/sub/run.h5";
  std::optional<RunLock> first(std::in_place, path);  // creates the missing directory
  EXPECT_TRUE(fs::exists(RunLock::lock_path(path)));
  const std::string error = error_of(path);
  EXPECT_NE(error.find("process " + std::to_string(::getpid())), std::string::npos) << error;
  EXPECT_NE(error.find("overwrite(true) does not change that"), std::string::npos) << error;
  // The refused attempt opened and closed the lock file: the first holder must still hold it.
  const auto state = RunLock::probe(path);
  EXPECT_TRUE(state.held);
  EXPECT_EQ(state.pid, static_cast<long>(::getpid()));
  EXPECT_FALSE(error_of(path).empty());
  first.reset();
  EXPECT_FALSE(fs::exists(RunLock::lock_path(path)));
  EXPECT_FALSE(RunLock::probe(path).held);
  EXPECT_EQ(error_of(path), "");
}

TEST(RunLock, AStaleLockFileDoesNotBlock) {
  const std::string path = neuronmap::test::fresh_test_dir("store_tmp") + "/run.h5";
  std::ofstream(RunLock::lock_path(path)) << "999999 crashed_trainer\n";
  EXPECT_FALSE(RunLock::probe(path).held);
  RunLock lock(path);
  EXPECT_EQ(RunLock::probe(path).pid, static_cast<long>(::getpid()));
}

// Another process holds the lock: refused with its pid; once it is killed with SIGKILL, taken at once.
TEST(RunLock, HolderInAnotherProcessIsNamedAndItsDeathReleasesTheLock) {
  const std::string path = neuronmap::test::fresh_test_dir("store_tmp") + "/run.h5";
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    try {
      RunLock lock(path);
      (void)!::write(ready[1], "1", 1);
      ::pause();
    } catch (...) {
    }
    ::_exit(1);
  }
  ::close(ready[1]);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  ::close(ready[0]);
  const std::string error = error_of(path);
  EXPECT_NE(error.find("process " + std::to_string(child)), std::string::npos) << error;
  const auto state = RunLock::probe(path);
  EXPECT_TRUE(state.held);
  EXPECT_EQ(state.pid, static_cast<long>(child));
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  EXPECT_FALSE(RunLock::probe(path).held);
  EXPECT_EQ(error_of(path), "");
}
