// How Options::process_group turns a process-group handle into a Communicator (neuronmap/communicator.hpp).
#pragma once

#include "neuronmap/communicator.hpp"

namespace neuronmap::detail {

/// The Communicator's earlier name, kept so that code written against it still compiles.
using Communicator = neuronmap::Communicator;

/// Turns a process-group handle into a Communicator (Options::process_group). Specialised in
/// neuronmap/distributed.hpp for c10::intrusive_ptr<T> with T derived from c10d::ProcessGroup.
template <typename ProcessGroup, typename Enable = void>
struct MakeCommunicator;

}  // namespace neuronmap::detail
