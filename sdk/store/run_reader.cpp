// RunReader: opens a run file for SWMR reading and reads committed snapshots only (commit record first).
// Every offset read from the file is checked against the extents before use: files may be damaged.
#include <hdf5.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <vector>

#include "neuronmap/errors.hpp"
#include "neuronmap/version.hpp"
#include "store/h5.hpp"
#include "store/run_file.hpp"
#include "store/schema.hpp"

namespace neuronmap::detail {

using h5::Handle;

namespace {

// A layer's heads from its rows of /data/heads (schema::kHeadFields each).
std::vector<HeadStatistics> heads_from(const std::vector<double>& fields) {
  std::vector<HeadStatistics> out;
  for (std::size_t i = 0; i + schema::kHeadFields <= fields.size(); i += schema::kHeadFields) {
    const double* f = fields.data() + i;
    HeadStatistics h;
    h.queries = static_cast<std::int64_t>(f[0]);
    h.entropy_mean = f[1];
    h.entropy_std = f[2];
    h.distance_mean = f[3];
    h.concentration = f[4];
    h.collapsed_fraction = f[5];
    h.uniform = f[6] != 0.0;
    h.collapsed = f[7] != 0.0;
    h.offset_weight.assign(f + 8, f + schema::kHeadFields);
    h.role = head_role(h);
    out.push_back(std::move(h));
  }
  return out;
}


struct Table {
  const char* name = nullptr;
  Handle dset;
  Handle mem_type;
  std::uint64_t extent = 0;
};

/// The end-of-file address a version 2 or 3 superblock (what libver "latest" writes) records, or 0.
std::uint64_t superblock_eof(const std::string& path) {
  unsigned char b[48] = {0};
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return 0;
  const std::size_t n = std::fread(b, 1, sizeof b, f);
  std::fclose(f);
  static const unsigned char signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  if (n < 44 || std::memcmp(b, signature, 8) != 0 || (b[8] != 2 && b[8] != 3) || b[9] != 8) return 0;
  auto u64 = [&](int at) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | b[at + i];
    return v;
  };
  return u64(12) + u64(28);  // base address + end-of-file address
}

constexpr unsigned kMetadataReadAttempts = 12;
// Reading raw data that the writer is rewriting (the last, partly filled chunk of a table) can see a
// torn chunk whose checksum fails; the rows we want are the same in both versions, so read again.
constexpr int kChecksumRetries = 8;

}  // namespace

struct RunReader::State {
  std::string path;
  Handle file;
  RunInfo info;
  Table snapshots, layer_rows, neurons, corr, groups, members, patterns, text;
  // format_version >= 2 only (not opened for version 1 files)
  Table reservoir, reservoir_ids, reservoir_tags, reservoir_loss, events, lineages, layer_cka, loss_curve;
  Table reference;  // format_version >= 3 only
  Table heads;      // format_version >= 5 only
  // HDF5 callocs a type-conversion buffer of H5Pset_buffer's size (default 1 MiB) for every H5Dread
  // that converts; 64 KiB holds over 190 of the largest rows (longer reads convert in strips). Under
  // ASan, where each 1 MiB calloc is a fresh mmap, this made the reader fuzzer 8x faster.
  Handle xfer;
  std::int64_t version = 0;
  std::vector<schema::CommitRow> commits;

  std::string where() const { return "run file '" + path + "'"; }

  [[noreturn]] void damaged(const std::string& what) const {
    throw FormatError(where() + " is damaged: " + what);
  }
  [[noreturn]] void fail(const std::string& what) const {
    bool system = false;
    const std::string reason = h5::last_error(&system);
    fail_with(what, reason, system);
  }
  /// Past the open, HDF5 failing on its own structures (checksums, bad addresses) means damage; only a
  /// failing system call is an I/O error.
  [[noreturn]] void fail_with(const std::string& what, const std::string& reason, bool system) const {
    if (!system) throw FormatError(where() + " is damaged: " + what + ": " + reason);
    throw FileError(where() + ": " + what + ": " + reason);
  }

  void read_rows(const Table& table, std::uint64_t offset, std::uint64_t count, void* out) const {
    if (count == 0) return;
    if (offset > table.extent || count > table.extent - offset)
      damaged(std::string(table.name) + " rows " + std::to_string(offset) + "+" + std::to_string(count) +
              " are past its end (" + std::to_string(table.extent) + ")");
    Handle space(H5Dget_space(table.dset.get()), &H5Sclose);
    if (!space.valid()) fail(std::string("cannot get the dataspace of ") + table.name);
    const hsize_t start[1] = {offset};
    const hsize_t n[1] = {count};
    if (H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start, nullptr, n, nullptr) < 0)
      fail(std::string("cannot select rows of ") + table.name);
    Handle mem(H5Screate_simple(1, n, nullptr), &H5Sclose);
    if (!mem.valid()) fail("cannot create a memory dataspace");
    for (int attempt = 0;; ++attempt) {
      if (H5Dread(table.dset.get(), table.mem_type.get(), mem.get(), space.get(), xfer.get(), out) >= 0) return;
      bool system = false;
      const std::string reason = h5::last_error(&system);
      if (attempt >= kChecksumRetries || reason.find("Fletcher32") == std::string::npos)
        fail_with(std::string("cannot read ") + table.name, reason, system);
      std::this_thread::sleep_for(std::chrono::milliseconds(1 << std::min(attempt, 6)));
      H5Drefresh(table.dset.get());  // also drops the dataset's chunk cache
    }
  }

  std::uint64_t current_extent(const Table& table) const {
    Handle space(H5Dget_space(table.dset.get()), &H5Sclose);
    if (!space.valid()) fail(std::string("cannot get the dataspace of ") + table.name);
    if (H5Sget_simple_extent_ndims(space.get()) != 1) damaged(std::string(table.name) + " is not 1-D");
    hsize_t dims[1] = {0};
    H5Sget_simple_extent_dims(space.get(), dims, nullptr);
    return dims[0];
  }

  // An attribute that cannot even be looked up means damage, not absence.
  bool has_attr(hid_t loc, const char* name) const {
    const htri_t exists = H5Aexists(loc, name);
    if (exists < 0) fail(std::string("cannot look up attribute ") + name);
    return exists > 0;
  }

  // The file's fixed-length string attribute `name`: one string when `scalar`, else an array of them.
  std::vector<std::string> read_strings_attr(const char* name, bool required, bool scalar) const {
    if (!has_attr(file.get(), name)) {
      if (required) damaged(std::string("attribute ") + name + " is missing");
      return {};
    }
    Handle attr(H5Aopen(file.get(), name, H5P_DEFAULT), &H5Aclose);
    if (!attr.valid()) fail(std::string("cannot open attribute ") + name);
    Handle type(H5Aget_type(attr.get()), &H5Tclose);
    if (!type.valid() || H5Tget_class(type.get()) != H5T_STRING || H5Tis_variable_str(type.get()) != 0)
      damaged(std::string("attribute ") + name +
              (scalar ? " is not a fixed-length string" : " is not an array of fixed-length strings"));
    Handle space(H5Aget_space(attr.get()), &H5Sclose);
    const hssize_t count = H5Sget_simple_extent_npoints(space.get());
    if (scalar && count != 1) damaged(std::string("attribute ") + name + " is not scalar");
    if (count < 0) fail(std::string("cannot read the size of attribute ") + name);
    const std::size_t width = H5Tget_size(type.get());
    std::vector<std::string> values;
    if (count == 0) return values;
    std::vector<char> buffer(width * static_cast<std::size_t>(count) + 1, '\0');
    if (H5Aread(attr.get(), type.get(), buffer.data()) < 0) fail(std::string("cannot read attribute ") + name);
    for (hssize_t i = 0; i < count; ++i) {
      const char* at = buffer.data() + static_cast<std::size_t>(i) * width;
      values.emplace_back(at, strnlen(at, width));
    }
    return values;
  }

  std::string read_string_attr(const char* name, bool required) const {
    auto values = read_strings_attr(name, required, true);
    return values.empty() ? std::string() : std::move(values.front());
  }

  /// SWMR readers skip HDF5's own check of the file's length (a live file grows), so check that the
  /// last stored chunk of every table lies inside the file. HDF5 indexes a chunk only after writing it,
  /// so a live or killed writer never fails this; a file cut short does.
  void check_length() {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return;
    const auto size = static_cast<std::uint64_t>(st.st_size);
    for (Table* t : tables()) {
      if (t->extent == 0) continue;
      const hsize_t last[1] = {t->extent - 1};
      unsigned filter_mask = 0;
      haddr_t address = HADDR_UNDEF;
      hsize_t bytes = 0;
      if (H5Dget_chunk_info_by_coord(t->dset.get(), last, &filter_mask, &address, &bytes) < 0 ||
          address == HADDR_UNDEF)
        continue;
      if (address + bytes > size)
        throw FileError(where() + " is truncated: " + t->name + " has data up to byte " +
                        std::to_string(address + bytes) + " but the file ends at byte " + std::to_string(size) +
                        " (copied while incomplete?)");
    }
  }

  std::vector<Table*> tables() {
    std::vector<Table*> all = {&snapshots, &layer_rows, &neurons, &corr, &groups, &members, &patterns, &text};
    if (version >= 2)
      all.insert(all.end(), {&reservoir, &reservoir_ids, &reservoir_tags, &reservoir_loss, &events, &lineages,
                             &layer_cka, &loss_curve});
    if (version >= 3) all.push_back(&reference);
    if (version >= 5) all.push_back(&heads);
    return all;
  }

  /// Rows of a table that holds at most `count` elements, after checking them against its extent
  /// (before allocating: a damaged count must not become a huge allocation).
  template <class T>
  std::vector<T> read_vector(const Table& table, std::uint64_t offset, std::uint64_t count) const {
    if (count > table.extent)
      damaged(std::string(table.name) + " rows " + std::to_string(offset) + "+" + std::to_string(count) +
              " are past its end (" + std::to_string(table.extent) + ")");
    std::vector<T> out(static_cast<std::size_t>(count));
    read_rows(table, offset, count, out.data());
    if constexpr (std::is_class_v<T>) {
      if (version < 2)
        for (auto& row : out) schema::version1_defaults(row);
      if (version < 3)
        for (auto& row : out) schema::version2_defaults(row);
      if (version < 4)
        for (auto& row : out) schema::version3_defaults(row);
      if (version < 5)
        for (auto& row : out) schema::version4_defaults(row);
    }
    return out;
  }

  std::string read_text(std::uint64_t offset, std::uint32_t len) const {
    if (len > text.extent) damaged("a string in /data/text is longer than the dataset");
    std::string out(len, '\0');
    read_rows(text, offset, len, out.data());
    return out;
  }

  // Reads new commit rows, then the extents of the data tables: data committed below the commit
  // count is then visible, because the writer flushed it before the commit row.
  void refresh() {
    if (H5Drefresh(snapshots.dset.get()) < 0) fail("cannot refresh /snapshots");
    const std::uint64_t n = current_extent(snapshots);
    const std::size_t known = commits.size();
    if (n > commits.size()) {
      const std::uint64_t old = commits.size();
      snapshots.extent = n;
      const auto rows = read_vector<schema::CommitRow>(snapshots, old, n - old);
      for (const auto& row : rows) {
        if (row.committed != 1) break;  // space allocated, row not written yet
        commits.push_back(row);
      }
    }
    // Data rows are read only below the commit count: without a new commit nothing else changed
    // that a reader may look at, and a poll without news costs one refresh (neuronmap serve polls).
    if (commits.size() == known && known > 0) return;
    for (Table* t : tables()) {
      if (t == &snapshots) continue;
      if (H5Drefresh(t->dset.get()) < 0) fail(std::string("cannot refresh ") + t->name);
      t->extent = current_extent(*t);
    }
  }

  const schema::CommitRow& commit(std::int64_t index) const {
    if (index < 0 || static_cast<std::uint64_t>(index) >= commits.size())
      throw UsageError(where() + ": snapshot index " + std::to_string(index) + " is out of range (size " +
                       std::to_string(commits.size()) + ")");
    return commits[static_cast<std::size_t>(index)];
  }

  std::vector<schema::LayerRow> read_layer_rows(std::int64_t index) const {
    const auto& c = commit(index);
    auto rows = read_vector<schema::LayerRow>(layer_rows, c.layer_rows_offset, c.n_layers);
    for (const auto& row : rows) {
      if (row.snapshot != static_cast<std::uint64_t>(index))
        damaged("/layer_rows row for snapshot " + std::to_string(index) + " names snapshot " +
                std::to_string(row.snapshot));
      if (row.n_neurons < 0 || row.ndim < 0 || row.ndim > schema::kMaxDims)
        damaged("/layer_rows row for snapshot " + std::to_string(index) + " has impossible sizes");
    }
    return rows;
  }

  std::string layer_name(const schema::LayerRow& row) const { return read_text(row.name_offset, row.name_len); }

  /// The snapshot-level fields: epoch, loss, timestamp and (format_version >= 2) phase, events,
  /// layer CKA and the loss curve; no layers.
  Snapshot header(std::int64_t index) const {
    const auto& c = commit(index);
    Snapshot out;
    out.epoch = c.epoch;
    out.loss = c.loss;
    out.timestamp = c.timestamp;
    if (version < 2) return out;
    out.phase = read_text(c.phase_offset, c.phase_len);
    for (const auto& er : read_vector<schema::EventRow>(events, c.event_offset, c.n_events)) {
      if (er.snapshot != static_cast<std::uint64_t>(index))
        damaged("/data/events row for snapshot " + std::to_string(index) + " names snapshot " +
                std::to_string(er.snapshot));
      Event e;
      e.epoch = er.epoch;
      e.layer = read_text(er.layer_offset, er.layer_len);
      e.kind = read_text(er.kind_offset, er.kind_len);
      e.skill_category = read_text(er.skill_offset, er.skill_len);
      e.lineages = read_vector<std::int64_t>(lineages, er.lineages_offset, er.n_lineages);
      e.strength = er.strength;
      e.loss_change = er.loss_change;
      out.events.push_back(std::move(e));
    }
    out.layer_cka = read_vector<double>(layer_cka, c.cka_offset, c.cka_count);
    for (const auto& lr : read_vector<schema::LossRow>(loss_curve, c.loss_offset, c.loss_count)) {
      out.loss_epochs.push_back(lr.epoch);
      out.losses.push_back(lr.loss);
    }
    return out;
  }
};

RunReader::RunReader(const std::string& path) : state_(std::make_unique<State>()) {
  h5::quiet();
  auto& s = *state_;
  s.path = path;

  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT) throw FileError(s.where() + " does not exist");
    throw FileError("cannot open " + s.where() + ": " + std::error_code(err, std::generic_category()).message());
  }
  if (S_ISDIR(st.st_mode)) throw FileError("cannot open " + s.where() + ": it is a directory");
  if (st.st_size == 0) throw FormatError(s.where() + " is empty, not an HDF5 file");
  const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  if (is_hdf5 < 0) s.fail("cannot open");
  if (is_hdf5 == 0) throw FormatError(s.where() + " is not an HDF5 file (and so not a NeuronMap run)");

  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), &H5Pclose);
  // SWMR readers retry a metadata read whose checksum fails (the writer may be rewriting it) with a
  // growing sleep; HDF5's default of 100 tries turns a damaged file into a minutes-long hang.
  if (!fapl.valid() || H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG) < 0 ||
      H5Pset_metadata_read_attempts(fapl.get(), kMetadataReadAttempts) < 0)
    s.fail("cannot set up file access");
  s.xfer = Handle(H5Pcreate(H5P_DATASET_XFER), &H5Pclose);
  if (!s.xfer.valid() || H5Pset_buffer(s.xfer.get(), 64 * 1024, nullptr, nullptr) < 0)
    s.fail("cannot set up data transfer");
  s.file = Handle(H5Fopen(path.c_str(), H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, fapl.get()), &H5Fclose);
  if (!s.file.valid()) {
    const std::string reason = h5::last_error();
    if (const auto eof = superblock_eof(path); eof > static_cast<std::uint64_t>(st.st_size))
      throw FileError(s.where() + " is truncated: its superblock says it ends at byte " + std::to_string(eof) +
                      " but it has " + std::to_string(st.st_size) + " bytes (copied while incomplete?)");
    if (reason.find("truncated") != std::string::npos)
      throw FileError(s.where() + " is truncated (" + reason + "); was it copied while incomplete?");
    // Not openable for SWMR reading: a foreign file in an older format, or damaged. Tell them apart.
    Handle plain(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()), &H5Fclose);
    if (plain.valid() && H5Aexists(plain.get(), schema::kFormatVersionAttr) == 0)
      throw FormatError(s.where() + " is an HDF5 file but not a NeuronMap run (no format_version attribute)");
    throw FormatError("cannot open " + s.where() + ": " + reason);
  }

  if (!s.has_attr(s.file.get(), schema::kFormatVersionAttr))
    throw FormatError(s.where() + " is an HDF5 file but not a NeuronMap run (no format_version attribute)");
  {
    Handle attr(H5Aopen(s.file.get(), schema::kFormatVersionAttr, H5P_DEFAULT), &H5Aclose);
    Handle type(attr.valid() ? H5Aget_type(attr.get()) : -1, &H5Tclose);
    Handle space(attr.valid() ? H5Aget_space(attr.get()) : -1, &H5Sclose);
    if (!type.valid() || H5Tget_class(type.get()) != H5T_INTEGER || !space.valid() ||
        H5Sget_simple_extent_npoints(space.get()) != 1)
      throw FormatError(s.where() + ": attribute format_version is not an integer; not a NeuronMap run");
    std::int64_t version = 0;
    if (H5Aread(attr.get(), H5T_NATIVE_INT64, &version) < 0) s.fail("cannot read format_version");
    if (version > kFormatVersion)
      throw FormatError(s.where() + " has format_version " + std::to_string(version) + ", newer than the " +
                        std::to_string(kFormatVersion) + " this NeuronMap " NEURONMAP_VERSION_STRING
                        " reads; upgrade NeuronMap");
    if (version < 1) throw FormatError(s.where() + " has an invalid format_version " + std::to_string(version));
    s.info.format_version = version;
    s.version = version;
  }
  s.info.library_version = s.read_string_attr(schema::kLibraryVersionAttr, true);
  s.info.torch_version = s.read_string_attr(schema::kTorchVersionAttr, false);
  s.info.device = s.read_string_attr(schema::kDeviceAttr, false);
  s.info.created = s.read_string_attr(schema::kCreatedAttr, false);
  s.info.options_json = s.read_string_attr(schema::kOptionsJsonAttr, false);
  const auto names = s.read_strings_attr(schema::kLayerNamesAttr, true, false);
  const auto types = s.read_strings_attr(schema::kLayerTypesAttr, true, false);
  const auto reductions = s.read_strings_attr(schema::kLayerReductionsAttr, true, false);
  if (types.size() != names.size() || reductions.size() != names.size())
    s.damaged("layer_names, layer_types and layer_reductions differ in length");
  for (std::size_t i = 0; i < names.size(); ++i) s.info.layers.push_back({names[i], types[i], reductions[i]});
  s.info.tag_names = s.read_strings_attr(schema::kTagNamesAttr, s.version >= 2, false);

  struct Spec {
    Table* table;
    const char* name;
    Handle mem_type;
  };
  // Older files lack the fields and datasets later versions added: read them through their version's types.
  std::vector<Spec> specs;
  specs.push_back({&s.snapshots, schema::kSnapshots, h5::commit_row_type(false, s.version)});
  specs.push_back({&s.layer_rows, schema::kLayerRows, h5::layer_row_type(false, s.version)});
  specs.push_back({&s.neurons, schema::kNeurons, h5::neuron_row_type(false, s.version)});
  specs.push_back({&s.corr, schema::kCorr, Handle(H5Tcopy(H5T_NATIVE_FLOAT), &H5Tclose)});
  specs.push_back({&s.groups, schema::kGroups, h5::group_row_type(false, s.version)});
  specs.push_back({&s.members, schema::kMembers, Handle(H5Tcopy(H5T_NATIVE_INT32), &H5Tclose)});
  specs.push_back({&s.patterns, schema::kPatterns, Handle(H5Tcopy(H5T_NATIVE_FLOAT), &H5Tclose)});
  specs.push_back({&s.text, schema::kText, Handle(H5Tcopy(H5T_NATIVE_UINT8), &H5Tclose)});
  if (s.version >= 2) {
    specs.push_back({&s.reservoir, schema::kReservoir, Handle(H5Tcopy(H5T_NATIVE_FLOAT), &H5Tclose)});
    specs.push_back({&s.reservoir_ids, schema::kReservoirIds, Handle(H5Tcopy(H5T_NATIVE_INT64), &H5Tclose)});
    specs.push_back({&s.reservoir_tags, schema::kReservoirTags, Handle(H5Tcopy(H5T_NATIVE_INT32), &H5Tclose)});
    specs.push_back({&s.reservoir_loss, schema::kReservoirLoss, Handle(H5Tcopy(H5T_NATIVE_FLOAT), &H5Tclose)});
    specs.push_back({&s.events, schema::kEvents, h5::event_row_type(false)});
    specs.push_back({&s.lineages, schema::kLineages, Handle(H5Tcopy(H5T_NATIVE_INT64), &H5Tclose)});
    specs.push_back({&s.layer_cka, schema::kLayerCka, Handle(H5Tcopy(H5T_NATIVE_DOUBLE), &H5Tclose)});
    specs.push_back({&s.loss_curve, schema::kLossCurve, h5::loss_row_type(false)});
  }
  if (s.version >= 3) specs.push_back({&s.reference, schema::kReference, Handle(H5Tcopy(H5T_NATIVE_FLOAT), &H5Tclose)});
  if (s.version >= 5) specs.push_back({&s.heads, schema::kHeads, Handle(H5Tcopy(H5T_NATIVE_DOUBLE), &H5Tclose)});
  for (auto& spec : specs) {
    auto& t = *spec.table;
    t.name = spec.name;
    t.mem_type = std::move(spec.mem_type);
    if (!t.mem_type.valid()) s.fail(std::string("cannot build the memory type of ") + spec.name);
    if (H5Lexists(s.file.get(), schema::kDataGroup, H5P_DEFAULT) <= 0 ||
        H5Lexists(s.file.get(), spec.name, H5P_DEFAULT) <= 0)
      s.damaged(std::string("dataset ") + spec.name + " is missing");
    t.dset = Handle(H5Dopen2(s.file.get(), spec.name, H5P_DEFAULT), &H5Dclose);
    if (!t.dset.valid()) s.fail(std::string("cannot open dataset ") + spec.name);
    // Check the stored types before any read converts through them (malformed compound types have
    // crashed HDF5's converter).
    Handle file_type(H5Dget_type(t.dset.get()), &H5Tclose);
    if (!file_type.valid()) s.fail(std::string("cannot read the type of ") + spec.name);
    const auto cls = H5Tget_class(t.mem_type.get());
    const bool ok = cls == H5T_COMPOUND ? h5::compound_matches(file_type.get(), t.mem_type.get())
                                        : H5Tget_class(file_type.get()) == cls && H5Tget_size(file_type.get()) <= 8;
    if (!ok) s.damaged(std::string("dataset ") + spec.name + " has an unexpected type");
  }
  s.refresh();
  s.check_length();
}

RunReader::~RunReader() = default;

const RunInfo& RunReader::info() const noexcept { return state_->info; }
std::int64_t RunReader::size() const noexcept { return static_cast<std::int64_t>(state_->commits.size()); }

std::int64_t RunReader::refresh() {
  h5::quiet();
  state_->refresh();
  return size();
}

SnapshotSummary RunReader::summary(std::int64_t index) const {
  h5::quiet();
  const auto& s = *state_;
  const auto& c = s.commit(index);
  SnapshotSummary out;
  out.epoch = c.epoch;
  out.loss = c.loss;
  out.timestamp = c.timestamp;
  for (const auto& row : s.read_layer_rows(index)) {
    LayerSummary layer;
    layer.name = s.layer_name(row);
    layer.n_neurons = row.n_neurons;
    layer.samples = row.samples;
    layer.groups = static_cast<std::int64_t>(row.n_groups);
    layer.mean_cohesion = row.mean_cohesion;
    layer.dead = row.dead_count;
    layer.reference_rows = row.reference_rows;
    layer.counters = {row.captured_batches, row.dropped_batches, row.skipped_batches,
                      row.rows,             row.nonfinite_rows,  row.errors,
                      row.budget_skipped_batches};
    for (const auto& gr : s.read_vector<schema::GroupRow>(s.groups, row.group_offset, row.n_groups))
      layer.group_summaries.push_back({gr.group_id, gr.size, gr.cohesion, gr.min_member_correlation, gr.loose != 0});
    out.layers.push_back(std::move(layer));
  }
  return out;
}

Snapshot RunReader::snapshot(std::int64_t index) const {
  h5::quiet();
  const auto& s = *state_;
  Snapshot out = s.header(index);
  for (const auto& row : s.read_layer_rows(index)) {
    LayerSnapshot layer;
    layer.name = s.layer_name(row);
    layer.output_shape.assign(row.output_shape, row.output_shape + row.ndim);
    layer.n_neurons = row.n_neurons;
    layer.samples = row.samples;
    layer.counters = {row.captured_batches, row.dropped_batches, row.skipped_batches,
                      row.rows,             row.nonfinite_rows,  row.errors,
                      row.budget_skipped_batches};

    const auto n = static_cast<std::uint64_t>(row.n_neurons);
    const auto neurons = s.read_vector<schema::NeuronRow>(s.neurons, row.neuron_offset, n);
    for (auto* v : {&layer.mean, &layer.stddev, &layer.min, &layer.max}) v->reserve(n);
    layer.dead.reserve(n);
    layer.labels.reserve(n);
    layer.gradient_samples = row.gradient_samples;
    for (const auto& nr : neurons) {
      layer.mean.push_back(nr.mean);
      layer.stddev.push_back(nr.stddev);
      layer.min.push_back(nr.min);
      layer.max.push_back(nr.max);
      layer.dead.push_back(nr.dead);
      layer.labels.push_back(nr.label);
      if (row.gradients & schema::kHasGradMeanAbs) layer.grad_mean_abs.push_back(nr.grad_mean_abs);
      if (row.gradients & schema::kHasTaylor) layer.taylor.push_back(nr.taylor);
      if (row.has_mean_abs != 0) layer.mean_abs.push_back(nr.mean_abs);
    }

    if (row.corr_count != 0 && row.corr_count != n * n)
      s.damaged("a correlation matrix of snapshot " + std::to_string(index) + " has the wrong size");
    layer.correlation = s.read_vector<float>(s.corr, row.corr_offset, row.corr_count);

    layer.dead_rate = row.dead_rate;
    layer.dormant_rate = row.dormant_rate;
    layer.cka_previous = row.cka_previous;
    layer.reservoir = s.read_vector<float>(s.reservoir, row.reservoir_offset, row.reservoir_count);
    layer.reservoir_ids = s.read_vector<std::int64_t>(s.reservoir_ids, row.reservoir_ids_offset, row.reservoir_ids_count);
    layer.reservoir_tags =
        s.read_vector<std::int32_t>(s.reservoir_tags, row.reservoir_tags_offset, row.reservoir_tags_count);
    layer.reservoir_loss = s.read_vector<float>(s.reservoir_loss, row.reservoir_loss_offset, row.reservoir_loss_count);
    if (row.reference_rows < 0 || row.reference_count != static_cast<std::uint64_t>(row.reference_rows) * n)
      s.damaged("a reference batch of snapshot " + std::to_string(index) + " has the wrong size");
    layer.reference = s.read_vector<float>(s.reference, row.reference_offset, row.reference_count);
    layer.reference_rows = row.reference_rows;
    if (row.heads_count % schema::kHeadFields != 0)
      s.damaged("the head statistics of snapshot " + std::to_string(index) + " have the wrong size");
    layer.heads = heads_from(s.read_vector<double>(s.heads, row.heads_offset, row.heads_count));

    for (const auto& gr : s.read_vector<schema::GroupRow>(s.groups, row.group_offset, row.n_groups)) {
      Group g;
      g.group_id = gr.group_id;
      g.layer_name = layer.name;
      if (gr.size < 0) s.damaged("a group of snapshot " + std::to_string(index) + " has impossible sizes");
      g.neuron_indices = s.read_vector<std::int32_t>(s.members, gr.members_offset, static_cast<std::uint64_t>(gr.size));
      g.activation_pattern = s.read_vector<float>(s.patterns, gr.pattern_offset, gr.pattern_len);
      g.cohesion_score = gr.cohesion;
      g.mean_activation = gr.mean_activation;
      g.importance = gr.importance;
      g.lineage_id = gr.lineage_id;
      g.selectivity = gr.selectivity;
      g.loss_correlation = gr.loss_correlation;
      g.min_member_correlation = gr.min_member_correlation;
      g.loose = gr.loose != 0;
      g.learning_phase.assign(gr.learning_phase, strnlen(gr.learning_phase, schema::kLabelLen));
      g.skill_category.assign(gr.skill_category, strnlen(gr.skill_category, schema::kLabelLen));
      layer.groups.push_back(std::move(g));
    }
    out.layers.push_back(std::move(layer));
  }
  return out;
}

Snapshot RunReader::snapshot_header(std::int64_t index) const {
  h5::quiet();
  return state_->header(index);
}

}  // namespace neuronmap::detail
