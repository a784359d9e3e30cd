// RunWriter: builds the run file's skeleton in `<path>.tmp`, renames it into place, then appends
// snapshots under SWMR with the commit row written last (docs/FORMAT.md, shared notes on HDF5).
#include <fcntl.h>
#include <hdf5.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <system_error>
#include <vector>

#include "neuronmap/errors.hpp"
#include "neuronmap/version.hpp"
#include "store/h5.hpp"
#include "store/run_file.hpp"
#include "store/schema.hpp"
#include "store/skeleton.hpp"

namespace neuronmap::detail {

namespace fs = std::filesystem;
using h5::Handle;

namespace {

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

// fsync a file or directory by path; returns 0 or an errno value.
int fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) return errno;
  int err = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  // Some file systems refuse fsync on directories; the rename is still atomic there.
  if (directory && err == EINVAL) err = 0;
  return err;
}

std::string parent_dir(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

/// One append-only 1-D dataset and how much of it is committed.
struct Table {
  const char* name = nullptr;
  Handle dset;
  Handle mem_type;              // type of the elements in memory
  std::uint64_t committed = 0;  // elements referenced by committed snapshots
  std::uint64_t extent = 0;     // current extent (>= committed after a failed append)
  std::uint64_t chunk = 1;      // elements per chunk
  std::uint64_t element_bytes = 1;  // in the file

  /// At most the file space that writing `count` more elements can take: every chunk they touch,
  /// filtered (the checksum adds 4 bytes), newly allocated.
  std::uint64_t bytes_for(std::uint64_t count) const {
    if (count == 0) return 0;
    const std::uint64_t chunks = (committed + count - 1) / chunk - committed / chunk + 1;
    return chunks * (chunk * element_bytes + 4);
  }
  std::uint64_t chunks_after(std::uint64_t count) const { return (committed + count + chunk - 1) / chunk; }
};

// Room for metadata a flush may add: object headers, the free-space manager, the superblock, and the
// chunk indexes (extensible arrays) that grow with the number of chunks.
constexpr std::uint64_t kMetadataMargin = 256 * 1024;
constexpr std::uint64_t kIndexBytesPerChunk = 32;

/// The file could not take the next snapshot, but nothing was written: appending may work later.
class NoRoom : public FileError {
 public:
  using FileError::FileError;
};

// The rows of /data/heads for a layer's heads (schema::kHeadFields each).
std::vector<double> head_fields(const std::vector<HeadStatistics>& heads) {
  std::vector<double> out;
  out.reserve(heads.size() * schema::kHeadFields);
  for (const auto& h : heads) {
    out.insert(out.end(), {static_cast<double>(h.queries), h.entropy_mean, h.entropy_std, h.distance_mean,
                           h.concentration, h.collapsed_fraction, h.uniform ? 1.0 : 0.0, h.collapsed ? 1.0 : 0.0});
    for (int k = 0; k < schema::kHeadOffsets; ++k) {
      out.push_back(static_cast<std::size_t>(k) < h.offset_weight.size() ? h.offset_weight[static_cast<std::size_t>(k)]
                                                                          : std::numeric_limits<double>::quiet_NaN());
    }
  }
  return out;
}

}  // namespace

struct RunWriter::State {
  std::string path;
  Handle file;
  Table snapshots, layer_rows, neurons, corr, groups, members, patterns, text;
  // format_version 2
  Table reservoir, reservoir_ids, reservoir_tags, reservoir_loss, events, lineages, layer_cka, loss_curve;
  Table reference;  // format_version 3
  Table heads;      // format_version 5
  std::vector<std::string> layer_names;  // from RunInfo, to fill LayerRow::layer
  bool closed = false;
  std::string broken;  // why HDF5 failed mid-write; the file is detached from then on

  std::vector<Table*> tables() {
    return {&snapshots, &layer_rows,     &neurons,        &corr,   &groups,   &members,   &patterns,
            &text,      &reservoir,      &reservoir_ids,  &reservoir_tags,    &reservoir_loss, &events,
            &lineages,  &layer_cka,      &loss_curve,     &reference,      &heads};
  }

  /// After HDF5 failed in the middle of writing, its view of the file no longer matches the disk and
  /// whatever it writes next (at the latest when closing) can make the file unreadable: a superblock
  /// promising more bytes than were written. The file as it is now holds every committed snapshot, so
  /// point HDF5's descriptor at /dev/null; HDF5 can then close without touching the file.
  void detach(const std::string& reason) {
    broken = reason;
    void* handle = nullptr;
    if (H5Fget_vfd_handle(file.get(), H5P_DEFAULT, &handle) < 0 || handle == nullptr) return;
    const int fd = *static_cast<int*>(handle);
    const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd < 0) return;
    ::dup2(null_fd, fd);
    ::close(null_fd);
  }

  /// Checks, before HDF5 writes anything, that the file can grow by `extra` bytes past what HDF5 has
  /// allocated: a disk that fills up in the middle of a flush leaves a superblock promising more file
  /// than there is, which readers refuse as truncated, and an HDF5 1.10.8 that cannot close the file.
  /// The space is allocated and given back at once (the file keeps its size); another process could
  /// take it in between, which leaves the rarer in-flush failure to detach(). Throws NoRoom.
  void reserve(std::uint64_t extra) const {
    hsize_t allocated = 0;
    void* handle = nullptr;
    if (H5Fget_filesize(file.get(), &allocated) < 0 || H5Fget_vfd_handle(file.get(), H5P_DEFAULT, &handle) < 0 ||
        handle == nullptr)
      fail("cannot get the file size");
    const int fd = *static_cast<int*>(handle);
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      throw NoRoom("run file '" + path + "': cannot stat: " + errno_text(err));
    }
    const auto size = static_cast<std::uint64_t>(st.st_size);
    const std::uint64_t target = std::max<std::uint64_t>(allocated, size) + extra;
    const int err = ::posix_fallocate(fd, static_cast<off_t>(size), static_cast<off_t>(target - size));
    // Give the space back, also after a partial success. Should that fail, the file is merely longer
    // than HDF5's allocation, which HDF5 and our reader accept.
    [[maybe_unused]] const int ignored = ::ftruncate(fd, static_cast<off_t>(size));
    if (err != 0)
      throw NoRoom("run file '" + path + "': no room for " + std::to_string((target - size + 1023) / 1024) +
                   " KiB more: " + errno_text(err));
  }

  [[noreturn]] void fail(const std::string& what) const {
    // Capture the HDF5 reason before anything else touches the error stack.
    throw FileError("run file '" + path + "': " + what + ": " + h5::last_error());
  }
  void check(long long status, const std::string& what) const {
    if (status < 0) fail(what);
  }

  // Writes `count` elements at the committed end of `table`, growing it when needed.
  void write_rows(Table& table, const void* data, std::uint64_t count) {
    if (count == 0) return;
    const std::uint64_t end = table.committed + count;
    if (end > table.extent) {
      const hsize_t dims[1] = {end};
      check(H5Dset_extent(table.dset.get(), dims), std::string("cannot extend ") + table.name);
      table.extent = end;
    }
    Handle space(H5Dget_space(table.dset.get()), &H5Sclose);
    if (!space.valid()) fail(std::string("cannot get the dataspace of ") + table.name);
    const hsize_t start[1] = {table.committed};
    const hsize_t n[1] = {count};
    check(H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start, nullptr, n, nullptr),
          std::string("cannot select rows of ") + table.name);
    Handle mem(H5Screate_simple(1, n, nullptr), &H5Sclose);
    if (!mem.valid()) fail("cannot create a memory dataspace");
    check(H5Dwrite(table.dset.get(), table.mem_type.get(), mem.get(), space.get(), H5P_DEFAULT, data),
          std::string("cannot write ") + table.name);
  }
};

void RunWriter::check_path(const std::string& path, bool overwrite) {
  if (path.empty()) throw FileError("run file: the path is empty; give Options{}.file(\"run.h5\")");
  std::error_code ec;
  const fs::path file(path);
  const fs::path parent = file.parent_path();
  if (!parent.empty()) {
    const auto parent_status = fs::status(parent, ec);
    if (!fs::exists(parent_status)) {
      fs::create_directories(parent, ec);
      if (ec)
        throw FileError("cannot create the directory '" + parent.string() + "' for run file '" + path +
                        "': " + ec.message());
    } else if (!fs::is_directory(parent_status)) {
      throw FileError("cannot create run file '" + path + "': '" + parent.string() + "' is not a directory");
    }
  }
  const auto status = fs::status(file, ec);
  if (fs::exists(status)) {
    if (fs::is_directory(status))
      throw FileError("cannot create run file '" + path + "': it is a directory");
    if (!overwrite)
      throw FileError("run file '" + path +
                      "' already exists; pass Options{}.overwrite(true) to replace it, or choose another file");
  }
  // Probe with the temporary name the writer uses anyway: proves the directory takes new files.
  const std::string probe = path + ".tmp";
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    throw FileError("cannot create run file '" + path + "': directory '" + parent_dir(path) +
                    "' is not writable (" + errno_text(err) + ")");
  }
  ::close(fd);
  ::unlink(probe.c_str());
}

namespace {

void copy_label(char (&dst)[schema::kLabelLen], const std::string& src) {
  std::memset(dst, 0, sizeof dst);
  std::memcpy(dst, src.data(), std::min(src.size(), sizeof dst));
}

}  // namespace

RunWriter::RunWriter(const std::string& path, const RunInfo& info, bool overwrite) : state_(std::make_unique<State>()) {
  h5::quiet();
  check_path(path, overwrite);
  auto& s = *state_;
  s.path = path;
  for (const auto& layer : info.layers) s.layer_names.push_back(layer.name);

  const std::string tmp = path + ".tmp";
  try {
    build_skeleton(tmp, info);
  } catch (const FileError& e) {
    ::unlink(tmp.c_str());
    throw FileError("cannot create run file '" + path + "': " + e.what());
  }
  // The skeleton must be on disk before its name is: a crash then leaves either no file or a whole one.
  if (int err = fsync_path(tmp, false); err != 0) {
    ::unlink(tmp.c_str());
    throw FileError("cannot create run file '" + path + "': fsync failed (" + errno_text(err) + ")");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw FileError("cannot create run file '" + path + "': rename failed (" + errno_text(err) + ")");
  }
  fsync_path(parent_dir(path), true);

  Handle fapl = file_access(true);
  s.file = Handle(H5Fopen(path.c_str(), H5F_ACC_RDWR | H5F_ACC_SWMR_WRITE, fapl.get()), &H5Fclose);
  if (!s.file.valid()) s.fail("cannot open for SWMR writing");

  struct Spec {
    Table* table;
    const char* name;
    Handle mem_type;
  };
  // Chunk lengths and element sizes come from the file, so the space estimate follows the schema.
  Spec specs[] = {
      {&s.snapshots, schema::kSnapshots, h5::commit_row_type(false, kFormatVersion)},
      {&s.layer_rows, schema::kLayerRows, h5::layer_row_type(false, kFormatVersion)},
      {&s.neurons, schema::kNeurons, h5::neuron_row_type(false, kFormatVersion)},
      {&s.corr, schema::kCorr, Handle(H5Tcopy(H5T_NATIVE_FLOAT), &H5Tclose)},
      {&s.groups, schema::kGroups, h5::group_row_type(false, kFormatVersion)},
      {&s.members, schema::kMembers, Handle(H5Tcopy(H5T_NATIVE_INT32), &H5Tclose)},
      {&s.patterns, schema::kPatterns, Handle(H5Tcopy(H5T_NATIVE_FLOAT), &H5Tclose)},
      {&s.text, schema::kText, Handle(H5Tcopy(H5T_NATIVE_UINT8), &H5Tclose)},
      {&s.reservoir, schema::kReservoir, Handle(H5Tcopy(H5T_NATIVE_FLOAT), &H5Tclose)},
      {&s.reservoir_ids, schema::kReservoirIds, Handle(H5Tcopy(H5T_NATIVE_INT64), &H5Tclose)},
      {&s.reservoir_tags, schema::kReservoirTags, Handle(H5Tcopy(H5T_NATIVE_INT32), &H5Tclose)},
      {&s.reservoir_loss, schema::kReservoirLoss, Handle(H5Tcopy(H5T_NATIVE_FLOAT), &H5Tclose)},
      {&s.events, schema::kEvents, h5::event_row_type(false)},
      {&s.lineages, schema::kLineages, Handle(H5Tcopy(H5T_NATIVE_INT64), &H5Tclose)},
      {&s.layer_cka, schema::kLayerCka, Handle(H5Tcopy(H5T_NATIVE_DOUBLE), &H5Tclose)},
      {&s.loss_curve, schema::kLossCurve, h5::loss_row_type(false)},
      {&s.reference, schema::kReference, Handle(H5Tcopy(H5T_NATIVE_FLOAT), &H5Tclose)},
      {&s.heads, schema::kHeads, Handle(H5Tcopy(H5T_NATIVE_DOUBLE), &H5Tclose)},
  };
  for (auto& spec : specs) {
    spec.table->name = spec.name;
    if (!spec.mem_type.valid()) s.fail(std::string("cannot build the memory type of ") + spec.name);
    spec.table->mem_type = std::move(spec.mem_type);
    spec.table->dset = Handle(H5Dopen2(s.file.get(), spec.name, H5P_DEFAULT), &H5Dclose);
    if (!spec.table->dset.valid()) s.fail(std::string("cannot open dataset ") + spec.name);
    Handle type(H5Dget_type(spec.table->dset.get()), &H5Tclose);
    Handle dcpl(H5Dget_create_plist(spec.table->dset.get()), &H5Pclose);
    hsize_t chunk[1] = {0};
    if (!type.valid() || !dcpl.valid() || H5Pget_chunk(dcpl.get(), 1, chunk) != 1)
      s.fail(std::string("cannot read the layout of ") + spec.name);
    spec.table->chunk = std::max<hsize_t>(chunk[0], 1);
    spec.table->element_bytes = H5Tget_size(type.get());
  }
}

RunWriter::~RunWriter() {
  try {
    close();
  } catch (...) {
    // A destructor cannot report; close() explicitly to see the error.
  }
}

std::int64_t RunWriter::size() const noexcept { return static_cast<std::int64_t>(state_->snapshots.committed); }

void RunWriter::append(const Snapshot& snapshot) {
  h5::quiet();
  auto& s = *state_;
  if (s.closed || !s.file.valid()) throw FileError("run file '" + s.path + "': append after close");
  if (!s.broken.empty())
    throw FileError("run file '" + s.path + "' takes no more snapshots after a write error (" + s.broken + "); the " +
                    std::to_string(s.snapshots.committed) + " snapshots written before are intact");

  // Validate first: nothing is written for a snapshot that does not fit the schema.
  for (const auto& layer : snapshot.layers) {
    const auto n = static_cast<std::size_t>(std::max<std::int64_t>(layer.n_neurons, 0));
    auto bad = [&](const std::string& what) {
      throw UsageError("snapshot at epoch " + std::to_string(snapshot.epoch) + ", layer '" + layer.name + "': " + what);
    };
    if (layer.n_neurons < 0) bad("n_neurons is negative");
    if (layer.mean.size() != n || layer.stddev.size() != n || layer.min.size() != n || layer.max.size() != n ||
        layer.dead.size() != n || layer.labels.size() != n)
      bad("mean, stddev, min, max, dead and labels must each have n_neurons (" + std::to_string(n) + ") entries");
    if ((!layer.grad_mean_abs.empty() && layer.grad_mean_abs.size() != n) ||
        (!layer.taylor.empty() && layer.taylor.size() != n) || (!layer.mean_abs.empty() && layer.mean_abs.size() != n))
      bad("grad_mean_abs, taylor and mean_abs must each be empty or have n_neurons (" + std::to_string(n) +
          ") entries");
    if (!layer.correlation.empty() && layer.correlation.size() != n * n)
      bad("correlation must be empty or n_neurons x n_neurons");
    if (layer.reference_rows < 0 ||
        layer.reference.size() != static_cast<std::size_t>(layer.reference_rows) * n)
      bad("reference must have reference_rows x n_neurons (" + std::to_string(layer.reference_rows) + " x " +
          std::to_string(n) + ") entries");
    if (layer.output_shape.size() > static_cast<std::size_t>(schema::kMaxDims))
      bad("output_shape has more than " + std::to_string(schema::kMaxDims) + " dimensions");
  }

  if (snapshot.loss_epochs.size() != snapshot.losses.size())
    throw UsageError("snapshot at epoch " + std::to_string(snapshot.epoch) + ": loss_epochs (" +
                     std::to_string(snapshot.loss_epochs.size()) + ") and losses (" +
                     std::to_string(snapshot.losses.size()) + ") differ in length");

  // Lay the snapshot out in the append-only tables, starting at their committed ends.
  std::vector<schema::LayerRow> layer_rows;
  std::vector<schema::NeuronRow> neurons;
  std::vector<float> corr;
  std::vector<schema::GroupRow> groups;
  std::vector<std::int32_t> members;
  std::vector<float> patterns;
  std::vector<std::uint8_t> text;
  std::vector<float> reservoir, reservoir_loss;
  std::vector<std::int64_t> reservoir_ids, lineages;
  std::vector<std::int32_t> reservoir_tags;
  std::vector<float> reference;
  std::vector<schema::EventRow> events;
  std::vector<schema::LossRow> loss_curve;
  std::vector<double> layer_cka;
  std::vector<double> heads;
  // Appends a string to /data/text; returns its offset there.
  auto add_text = [&](const std::string& value, std::uint32_t& len) {
    const std::uint64_t offset = s.text.committed + text.size();
    len = static_cast<std::uint32_t>(value.size());
    text.insert(text.end(), value.begin(), value.end());
    return offset;
  };
  // Appends `values` to `out`, the pending rows of `table`; sets the offset and count of the copy.
  auto add = [](const Table& table, auto& out, const auto& values, std::uint64_t& offset, std::uint64_t& count) {
    offset = table.committed + out.size();
    count = values.size();
    out.insert(out.end(), values.begin(), values.end());
  };
  layer_rows.reserve(snapshot.layers.size());
  for (const auto& layer : snapshot.layers) {
    schema::LayerRow row{};
    row.snapshot = s.snapshots.committed;
    const auto it = std::find(s.layer_names.begin(), s.layer_names.end(), layer.name);
    row.layer = it == s.layer_names.end() ? -1 : static_cast<std::int32_t>(it - s.layer_names.begin());
    row.name_offset = add_text(layer.name, row.name_len);
    row.n_neurons = layer.n_neurons;
    row.samples = layer.samples;
    row.ndim = static_cast<std::int32_t>(layer.output_shape.size());
    std::copy(layer.output_shape.begin(), layer.output_shape.end(), row.output_shape);
    row.captured_batches = layer.counters.captured_batches;
    row.dropped_batches = layer.counters.dropped_batches;
    row.skipped_batches = layer.counters.skipped_batches;
    row.budget_skipped_batches = layer.counters.budget_skipped_batches;
    row.rows = layer.counters.rows;
    row.nonfinite_rows = layer.counters.nonfinite_rows;
    row.errors = layer.counters.errors;
    row.neuron_offset = s.neurons.committed + neurons.size();
    const bool has_grad = !layer.grad_mean_abs.empty();
    const bool has_taylor = !layer.taylor.empty();
    const bool has_mean_abs = !layer.mean_abs.empty();
    row.has_mean_abs = has_mean_abs ? 1 : 0;
    row.gradient_samples = layer.gradient_samples;
    row.gradients = static_cast<std::uint8_t>((has_grad ? schema::kHasGradMeanAbs : 0) | (has_taylor ? schema::kHasTaylor : 0));
    for (std::size_t i = 0; i < static_cast<std::size_t>(layer.n_neurons); ++i)
      neurons.push_back({layer.mean[i], layer.stddev[i], layer.min[i], layer.max[i], layer.dead[i], layer.labels[i],
                         has_grad ? layer.grad_mean_abs[i] : 0.0, has_taylor ? layer.taylor[i] : 0.0,
                         has_mean_abs ? layer.mean_abs[i] : 0.0});
    row.corr_offset = s.corr.committed + corr.size();
    row.corr_count = layer.correlation.size();
    corr.insert(corr.end(), layer.correlation.begin(), layer.correlation.end());
    row.group_offset = s.groups.committed + groups.size();
    row.n_groups = layer.groups.size();
    for (const auto& g : layer.groups) {
      schema::GroupRow gr{};
      gr.group_id = g.group_id;
      gr.layer_row = s.layer_rows.committed + layer_rows.size();
      gr.size = static_cast<std::int64_t>(g.neuron_indices.size());
      gr.cohesion = g.cohesion_score;
      gr.mean_activation = g.mean_activation;
      gr.importance = g.importance;
      gr.members_offset = s.members.committed + members.size();
      members.insert(members.end(), g.neuron_indices.begin(), g.neuron_indices.end());
      gr.pattern_offset = s.patterns.committed + patterns.size();
      gr.pattern_len = g.activation_pattern.size();
      patterns.insert(patterns.end(), g.activation_pattern.begin(), g.activation_pattern.end());
      copy_label(gr.learning_phase, g.learning_phase);
      copy_label(gr.skill_category, g.skill_category);
      gr.lineage_id = g.lineage_id;
      gr.selectivity = g.selectivity;
      gr.loss_correlation = g.loss_correlation;
      gr.min_member_correlation = g.min_member_correlation;
      gr.loose = g.loose ? 1 : 0;
      groups.push_back(gr);
    }
    row.dead_rate = layer.dead_rate;
    row.dormant_rate = layer.dormant_rate;
    row.cka_previous = layer.cka_previous;
    add(s.reservoir, reservoir, layer.reservoir, row.reservoir_offset, row.reservoir_count);
    add(s.reservoir_ids, reservoir_ids, layer.reservoir_ids, row.reservoir_ids_offset, row.reservoir_ids_count);
    add(s.reservoir_tags, reservoir_tags, layer.reservoir_tags, row.reservoir_tags_offset, row.reservoir_tags_count);
    add(s.reservoir_loss, reservoir_loss, layer.reservoir_loss, row.reservoir_loss_offset, row.reservoir_loss_count);
    add(s.reference, reference, layer.reference, row.reference_offset, row.reference_count);
    row.reference_rows = layer.reference_rows;
    add(s.heads, heads, head_fields(layer.heads), row.heads_offset, row.heads_count);
    row.mean_cohesion = layer.mean_cohesion();
    row.dead_count = layer.dead_count();
    layer_rows.push_back(row);
  }

  schema::CommitRow commit{};
  commit.epoch = snapshot.epoch;
  commit.loss = snapshot.loss;
  commit.timestamp = snapshot.timestamp;
  commit.layer_rows_offset = s.layer_rows.committed;
  commit.n_layers = static_cast<std::uint32_t>(snapshot.layers.size());
  commit.committed = 1;
  commit.phase_offset = add_text(snapshot.phase, commit.phase_len);
  commit.event_offset = s.events.committed;
  commit.n_events = snapshot.events.size();
  for (const auto& e : snapshot.events) {
    schema::EventRow er{};
    er.snapshot = s.snapshots.committed;
    er.epoch = e.epoch;
    er.layer_offset = add_text(e.layer, er.layer_len);
    er.kind_offset = add_text(e.kind, er.kind_len);
    er.skill_offset = add_text(e.skill_category, er.skill_len);
    add(s.lineages, lineages, e.lineages, er.lineages_offset, er.n_lineages);
    er.strength = e.strength;
    er.loss_change = e.loss_change;
    events.push_back(er);
  }
  add(s.layer_cka, layer_cka, snapshot.layer_cka, commit.cka_offset, commit.cka_count);
  commit.loss_offset = s.loss_curve.committed;
  commit.loss_count = snapshot.losses.size();
  for (std::size_t i = 0; i < snapshot.losses.size(); ++i) loss_curve.push_back({snapshot.loss_epochs[i], snapshot.losses[i]});

  const std::uint64_t committed_snapshots = s.snapshots.committed;
  // The data tables in write order (the commit row, in /snapshots, goes last).
  struct Pending {
    Table* table;
    const void* data;
    std::uint64_t count;
  };
  const Pending pending[] = {{&s.neurons, neurons.data(), neurons.size()},
                             {&s.corr, corr.data(), corr.size()},
                             {&s.members, members.data(), members.size()},
                             {&s.patterns, patterns.data(), patterns.size()},
                             {&s.groups, groups.data(), groups.size()},
                             {&s.reservoir, reservoir.data(), reservoir.size()},
                             {&s.reservoir_ids, reservoir_ids.data(), reservoir_ids.size()},
                             {&s.reservoir_tags, reservoir_tags.data(), reservoir_tags.size()},
                             {&s.reservoir_loss, reservoir_loss.data(), reservoir_loss.size()},
                             {&s.reference, reference.data(), reference.size()},
                             {&s.heads, heads.data(), heads.size()},
                             {&s.lineages, lineages.data(), lineages.size()},
                             {&s.events, events.data(), events.size()},
                             {&s.layer_cka, layer_cka.data(), layer_cka.size()},
                             {&s.loss_curve, loss_curve.data(), loss_curve.size()},
                             {&s.text, text.data(), text.size()},
                             {&s.layer_rows, layer_rows.data(), layer_rows.size()}};
  std::uint64_t need = kMetadataMargin + s.snapshots.bytes_for(1) + s.snapshots.chunks_after(1) * kIndexBytesPerChunk;
  for (const auto& p : pending) need += p.table->bytes_for(p.count) + p.table->chunks_after(p.count) * kIndexBytesPerChunk;
  try {
    s.reserve(need);
    for (const auto& p : pending) s.write_rows(*p.table, p.data, p.count);
    // Everything the commit row points at reaches the file before the commit row does.
    s.check(H5Fflush(s.file.get(), H5F_SCOPE_LOCAL), "cannot flush snapshot data");
    // The flush may have truncated the file to HDF5's allocation: reserve again for the commit row.
    s.reserve(kMetadataMargin + s.snapshots.bytes_for(1) + s.snapshots.chunks_after(1) * kIndexBytesPerChunk);
    s.write_rows(s.snapshots, &commit, 1);
    s.check(H5Dflush(s.snapshots.dset.get()), "cannot flush the commit record");
  } catch (const NoRoom& e) {
    // Nothing reached HDF5: the data tables' extents may have grown in an earlier step, but rows past
    // the committed offsets are unreferenced and the next append overwrites them.
    if (s.snapshots.extent > committed_snapshots) {
      const hsize_t dims[1] = {committed_snapshots};
      if (H5Dset_extent(s.snapshots.dset.get(), dims) >= 0) s.snapshots.extent = committed_snapshots;
    }
    throw FileError(std::string(e.what()) + " (snapshot at epoch " + std::to_string(snapshot.epoch) +
                    " not written; earlier snapshots are kept)");
  } catch (const FileError& e) {
    s.detach(e.what());
    throw FileError(std::string(e.what()) + " (snapshot at epoch " + std::to_string(snapshot.epoch) +
                    " not written; earlier snapshots are kept, later ones are refused)");
  }
  s.snapshots.committed += 1;
  for (const auto& p : pending) p.table->committed += p.count;
}

void RunWriter::close() {
  auto& s = *state_;
  if (s.closed) return;
  s.closed = true;
  h5::quiet();
  for (Table* t : s.tables()) {
    t->dset.reset();
    t->mem_type.reset();
  }
  if (!s.file.valid()) return;
  // Flush first: should that fail, detach before H5Fclose, whose own failure leaves HDF5 with a
  // half-closed file that it tries to close again at exit, and crashes (1.10.8).
  if (s.broken.empty() && H5Fflush(s.file.get(), H5F_SCOPE_LOCAL) < 0) {
    const std::string reason = "cannot flush when closing: " + h5::last_error();
    s.detach(reason);
    s.file.reset();
    throw FileError("run file '" + s.path + "': " + reason + "; the " + std::to_string(s.snapshots.committed) +
                    " snapshots written before are intact");
  }
  // A detached file closes into /dev/null; if HDF5 still fails (a failed metadata flush leaves 1.10.8's
  // cache unable to flush again), there is nothing left to report: the file on disk is as it was.
  if (s.file.reset() < 0 && s.broken.empty()) s.fail("cannot close");
}

}  // namespace neuronmap::detail
