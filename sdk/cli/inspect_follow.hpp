// `neuronmap inspect RUN.h5 --follow`: a row (or a JSON line) per snapshot as it is committed.
#pragma once

#include <string>

namespace neuronmap::cli {

/// Prints every committed snapshot, then each new one, until interrupted or, with `idle_exit` > 0,
/// until no snapshot came for that many seconds. Returns the exit code (2 when no run file was ever read).
int follow_run(const std::string& path, bool json, double idle_exit);

}  // namespace neuronmap::cli
