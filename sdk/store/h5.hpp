// Small HDF5 helpers shared by the run-file writer and reader. Declared without <hdf5.h> (ids are
// int64_t, as hid_t is in HDF5 1.10) so that only the store's .cpp files see the HDF5 headers.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

namespace neuronmap::detail::h5 {

using Id = std::int64_t;            // hid_t
using Closer = int (*)(Id);         // H5Dclose, H5Tclose, ...

/// Owns one HDF5 id and closes it with the matching H5?close. Move-only.
class Handle {
 public:
  Handle() = default;
  Handle(Id id, Closer closer) noexcept : id_(id), closer_(closer) {}
  Handle(Handle&& other) noexcept : id_(std::exchange(other.id_, -1)), closer_(other.closer_) {}
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = std::exchange(other.id_, -1);
      closer_ = other.closer_;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }

  Id get() const noexcept { return id_; }
  bool valid() const noexcept { return id_ >= 0; }
  /// Gives up ownership without closing.
  Id release() noexcept { return std::exchange(id_, -1); }
  /// Closes the id; returns the closer's status (negative on failure, 0 when nothing was open).
  int reset() noexcept {
    int status = 0;
    if (id_ >= 0 && closer_ != nullptr) status = closer_(id_);
    id_ = -1;
    return status;
  }

 private:
  Id id_ = -1;
  Closer closer_ = nullptr;
};

/// Turns off HDF5's printing of error stacks for the calling thread (the build is thread-safe, so the
/// setting is per thread). Call at the top of every entry point before any other HDF5 call.
void quiet() noexcept;

/// The current thread's HDF5 error stack in one short line: the system's error text when the stack
/// carries one (e.g. "No space left on device"), otherwise the innermost description. Call it right
/// after the failing call: any further HDF5 call clears the stack.
/// `system` (optional) tells whether the text is the system's (an I/O error) rather than HDF5's.
std::string last_error(bool* system = nullptr);

/// Compound types for the schema rows: `file` = packed little-endian layout stored in the file,
/// otherwise the native in-memory layout of the structs in schema.hpp. `version`: the format version
/// whose fields the type carries (a version 1 type leaves the fields later versions added out).
Handle commit_row_type(bool file, std::int64_t version);
Handle layer_row_type(bool file, std::int64_t version);
Handle neuron_row_type(bool file, std::int64_t version);
Handle group_row_type(bool file, std::int64_t version);
Handle event_row_type(bool file);  // format_version >= 2
Handle loss_row_type(bool file);   // format_version >= 2

/// True if the dataset's compound type carries every member of `expected` with the same type class,
/// so that reading through `expected` converts by name without surprises.
bool compound_matches(Id file_type, Id expected);

}  // namespace neuronmap::detail::h5
