// The exceptions NeuronMap throws at set-up and I/O calls. The training step itself never sees one.
#pragma once

#include <stdexcept>
#include <string>

namespace neuronmap {

/// Base of every NeuronMap exception.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A layer name given to attach() is not a submodule of the model (the message lists valid names).
class LayerNotFound : public Error {
 public:
  using Error::Error;
};

/// A submodule exists but cannot be probed (the message says why and what to do instead).
class UnsupportedModule : public Error {
 public:
  using Error::Error;
};

/// A call that breaks the session's contract: bad options, end_epoch out of order, ...
class UsageError : public Error {
 public:
  using Error::Error;
};

/// The run file cannot be created, written or read.
class FileError : public Error {
 public:
  using Error::Error;
};

/// The file exists but is not a NeuronMap run file, is damaged, or has a newer format.
class FormatError : public FileError {
 public:
  using FileError::FileError;
};

/// A collective of a distributed session failed: a rank is gone or the process group timed out.
class DistributedError : public Error {
 public:
  using Error::Error;
};

}  // namespace neuronmap
