// The one thing a session needs from a process group, free of LibTorch: a gather of byte buffers to
// rank 0. NeuronMap::distributed implements it over c10d (neuronmap/distributed.hpp); a test or an
// MPI user may implement it too.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace neuronmap::detail {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// Called by every rank with its bytes (sizes may differ). Rank 0 gets every rank's buffer in rank
  /// order, the other ranks an empty vector. Throws neuronmap::DistributedError when a rank is gone or
  /// the group's timeout passes; the group is unusable afterwards.
  virtual std::vector<std::vector<std::uint8_t>> gather(const std::vector<std::uint8_t>& bytes) = 0;
  /// For messages: e.g. "gloo process group, rank 1 of 2".
  virtual std::string describe() const = 0;
};

/// Turns a process-group handle into a Communicator (Options::process_group). Specialised in
/// neuronmap/distributed.hpp for c10::intrusive_ptr<T> with T derived from c10d::ProcessGroup.
template <typename ProcessGroup, typename Enable = void>
struct MakeCommunicator;

}  // namespace neuronmap::detail
