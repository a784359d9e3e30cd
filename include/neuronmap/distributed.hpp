// Data-parallel training over c10d: `Options{}.process_group(pg)` with a c10d process group (Gloo).
// Each rank probes its own shard; at each snapshot the ranks' statistics are combined and rank 0
// alone analyses and writes the run file (docs/DISTRIBUTED.md). Link NeuronMap::distributed. For another
// transport (MPI, ...) implement neuronmap::Communicator (communicator.hpp) instead.
#pragma once

#include <chrono>
#include <memory>
#include <type_traits>
#include <utility>

#include <c10/util/intrusive_ptr.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include "neuronmap/communicator.hpp"
#include "neuronmap/detail/communicator.hpp"
#include "neuronmap/options.hpp"

namespace neuronmap {

/// The session's side of a c10d process group. A snapshot's collectives (an all-reduce of one int64,
/// then a gather to rank 0) wait at most `timeout` for the other ranks; zero: the group's own timeout.
/// They throw DistributedError when a rank is gone; the session records it (Session::last_error).
std::shared_ptr<Communicator> make_communicator(c10::intrusive_ptr<c10d::ProcessGroup> group,
                                                std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

namespace detail {

/// What makes `Options{}.process_group(pg)` accept a c10::intrusive_ptr to any c10d process group.
template <typename T>
struct MakeCommunicator<c10::intrusive_ptr<T>, std::enable_if_t<std::is_base_of_v<c10d::ProcessGroup, T>>> {
  static std::shared_ptr<Communicator> make(c10::intrusive_ptr<T> group) {
    return neuronmap::make_communicator(c10::intrusive_ptr<c10d::ProcessGroup>(std::move(group)));
  }
};

}  // namespace detail
}  // namespace neuronmap
