// Test-only hooks on a Session, kept off the public class (tests, training_child, the Python module's
// underscore-named hook). Not installed.
#pragma once

#include "neuronmap/fwd.hpp"

namespace neuronmap::detail {

/// Every worker of `session` sleeps `seconds` before each batch: a deliberately slow consumer, to
/// test backpressure. 0 turns it off.
void set_worker_delay(Session& session, double seconds);

}  // namespace neuronmap::detail
