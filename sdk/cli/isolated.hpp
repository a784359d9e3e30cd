// Running a verb's work in a child process, so that a damaged file that crashes the HDF5 library (or
// sends it into an endless retry loop) yields a one-line error, not a crash of `neuronmap` itself.
#pragma once

#include <functional>
#include <string>

namespace neuronmap::cli {

/// What the messages of an isolated run say.
struct Isolation {
  std::string verb;     // "inspect": prefixes the runner's own failures ("inspect: cannot fork: ...")
  std::string action;   // "reading 'run.h5'": what the child does, for "internal error <action>: ..."
  std::string crashed;  // the message when a signal ended the child, before " (signal N): the file is damaged"
  /// A watchdog: the child is ended when `step_timeout` seconds pass between two calls of its `tick`
  /// (0: none), and the error says `stalled`.
  unsigned step_timeout = 0;
  std::string stalled;
};

/// Runs `work` in a forked child and returns the text it returned. A neuronmap::Error the child throws
/// is thrown here again with its message (on one line); any other exception becomes an Error that
/// names `action`; a signal becomes a FormatError. The child leaves with _exit: no exit handlers of
/// the parent's copy (HDF5's among them) run in it. `work` may call `tick` to say it made progress.
std::string run_isolated(const Isolation& how, const std::function<std::string(const std::function<void()>& tick)>& work);

}  // namespace neuronmap::cli
