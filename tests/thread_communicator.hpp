// Ranks as threads, for tests of distributed sessions without processes: what an MPI user would
// write over MPI_Gatherv, here over a barrier. gather() meets at the barrier; a rank that does not come
// within the timeout makes the others throw, as a process group's timeout does.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "neuronmap/communicator.hpp"
#include "neuronmap/errors.hpp"

namespace neuronmap::test {

struct Rendezvous {
  Rendezvous(int world, std::chrono::milliseconds timeout)
      : world(world), timeout(timeout), parts(static_cast<std::size_t>(world)) {}
  int world;
  std::chrono::milliseconds timeout;
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<std::vector<std::uint8_t>> parts, result;
  int arrived = 0;
  long generation = 0;
};

class ThreadCommunicator final : public Communicator {
 public:
  ThreadCommunicator(std::shared_ptr<Rendezvous> meeting, int rank) : meeting_(std::move(meeting)), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return meeting_->world; }
  std::string describe() const override { return "threads, rank " + std::to_string(rank_); }
  std::vector<std::vector<std::uint8_t>> gather(const std::vector<std::uint8_t>& bytes) override {
    auto& m = *meeting_;
    std::unique_lock<std::mutex> lock(m.mutex);
    m.parts[static_cast<std::size_t>(rank_)] = bytes;
    const long generation = m.generation;
    if (++m.arrived == m.world) {
      m.arrived = 0;
      m.result = m.parts;
      ++m.generation;
      m.changed.notify_all();
    } else if (!m.changed.wait_for(lock, m.timeout, [&] { return m.generation != generation; })) {
      throw DistributedError("a rank did not arrive within " + std::to_string(m.timeout.count()) + " ms");
    }
    return rank_ == 0 ? m.result : std::vector<std::vector<std::uint8_t>>{};
  }

 private:
  std::shared_ptr<Rendezvous> meeting_;
  int rank_;
};

}  // namespace neuronmap::test
