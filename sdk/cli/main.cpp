// The `neuronmap` command line: one verb per file (inspect.cpp, groups.cpp, ...), registered in verbs.cpp.
#include <cstdio>
#include <cstdlib>

#include "cli/verbs.hpp"

int main(int argc, char** argv) {
  const int code = neuronmap::cli::run_command_line(argc, argv);
  if (code != 0) {
    // After an error, leave without the exit handlers: a damaged HDF5 file (a flipped byte in a
    // capture input) can leave an object the library fails to close, and HDF5's own exit handler then
    // prints "HDF5: infinite loop closing library" under our one-line message. Our handles are closed
    // by then, and nothing written needs HDF5's cleanup.
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(code);
  }
  return code;
}
