// Communicator: what a distributed session needs from a process group, free of LibTorch. Implement it
// to run NeuronMap over MPI or any other transport; NeuronMap::distributed implements it over c10d
// (neuronmap/distributed.hpp: make_communicator). Give it to a session with
// `Options{}.communicator(std::make_shared<MyCommunicator>(...))`, one instance per rank.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace neuronmap {

/// One rank's view of a group of processes that train one model together (data parallel). Each rank
/// attaches its own session; at every snapshot epoch the ranks' statistics travel to rank 0 through
/// gather(), and rank 0 alone analyses them and writes the run file (docs/DISTRIBUTED.md).
///
/// The session calls rank() and size() on the attaching thread, during attach, and gather() only
/// inside Session::end_epoch at snapshot epochs, on the thread that calls it. It never calls two
/// methods at once, and holds the communicator (a shared_ptr) until the session is destroyed.
class Communicator {
 public:
  virtual ~Communicator() = default;

  /// This process's rank, 0 <= rank() < size(); constant. Rank 0 writes the run file; the other ranks
  /// never create, open or check it.
  virtual int rank() const = 0;

  /// The number of ranks (>= 1); constant, and the same on every rank.
  virtual int size() const = 0;

  /// A collective: every rank calls it once per snapshot epoch, in the same order, with its bytes
  /// (opaque; sizes differ between ranks, and rank 0 passes an empty buffer). On rank 0 it returns
  /// size() buffers in rank order, entry r holding what rank r passed (entry 0 is not read); on the
  /// other ranks the result is ignored (return an empty vector).
  ///
  /// When a rank is gone or a timeout passes, throw (neuronmap::DistributedError, or any
  /// std::exception) rather than block for ever: the session records the message in last_error(),
  /// stops capturing, and calls gather() no more; training goes on and the run file keeps the
  /// snapshots committed before. Runs on the training thread, so the training's own collectives on
  /// the same group (e.g. gradient all-reduces) keep their order relative to it.
  virtual std::vector<std::vector<std::uint8_t>> gather(const std::vector<std::uint8_t>& bytes) = 0;

  /// For messages, e.g. "gloo process group, rank 1 of 2". Should not throw.
  virtual std::string describe() const = 0;
};

}  // namespace neuronmap
