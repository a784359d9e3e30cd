// The `neuronmap` command line: one verb per file (inspect.cpp, groups.cpp, ...), registered in verbs.cpp.
#include "cli/verbs.hpp"

int main(int argc, char** argv) { return neuronmap::cli::run_command_line(argc, argv); }
