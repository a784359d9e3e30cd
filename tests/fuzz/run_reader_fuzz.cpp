// libFuzzer target for the run-file reader (sdk/store/run_reader.cpp). Structure-aware: each input is
// a list of edits to a valid run file written by our own writer (bytes of table rows, table extents,
// the file's attributes, whole datasets), applied through HDF5, or of byte flips in the file's first
// 64 KiB, where HDF5 keeps its own structures (superblock, object headers, chunk indexes); then the
// reader opens the file and reads every snapshot. Whatever the edits, the reader must answer with
// neuronmap::Error: never a crash, a sanitizer report, a hang or a huge allocation.
// Input: records of 6 bytes [operation << 5 | target] [position: 4 bytes little-endian] [value].
// Build and run: scripts/fuzz (clang, -fsanitize=fuzzer,address,undefined).
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "neuronmap/errors.hpp"
#include "sample_run.hpp"
#include "scratch.hpp"
#include "store/run_file.hpp"
#include "store/schema.hpp"

namespace {

namespace schema = neuronmap::detail::schema;

const char* const kTables[] = {schema::kSnapshots,     schema::kLayerRows,     schema::kNeurons,
                               schema::kCorr,          schema::kGroups,        schema::kMembers,
                               schema::kPatterns,      schema::kText,          schema::kReservoir,
                               schema::kReservoirIds,  schema::kReservoirTags, schema::kReservoirLoss,
                               schema::kEvents,        schema::kLineages,      schema::kLayerCka,
                               schema::kLossCurve,     schema::kReference};
constexpr unsigned kTableCount = sizeof(kTables) / sizeof(kTables[0]);

const char* const kAttributes[] = {schema::kFormatVersionAttr, schema::kLibraryVersionAttr,
                                   schema::kTorchVersionAttr,  schema::kDeviceAttr,
                                   schema::kCreatedAttr,       schema::kOptionsJsonAttr,
                                   schema::kLayerNamesAttr,    schema::kLayerTypesAttr,
                                   schema::kLayerReductionsAttr, schema::kTagNamesAttr};
constexpr unsigned kAttributeCount = sizeof(kAttributes) / sizeof(kAttributes[0]);

enum Operation : unsigned {
  kXorByte = 0,     // xor one byte of one row with `value`
  kFillOnes = 1,    // write 0xff over 8 bytes of one row (huge counts and offsets)
  kSetByte = 2,     // set one byte of one row to `value` (small counts)
  kResize = 3,      // change the table's extent to position % (extent + 4)
  kAttribute = 4,   // rewrite or delete an attribute (value picks how)
  kDelete = 5,      // delete the table's link
  kSetInt = 6,      // write `value` - 128 as an int64 at a row's byte offset (e.g. -1 as a count)
  kFlipFileByte = 7,  // xor a byte of the file's first 64 KiB; an input with one makes no HDF5 edits
};

std::string g_dir, g_work, g_good_bytes;

void init() {
  if (!g_work.empty()) return;
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  // Each input rewrites the file: keep it in memory where /dev/shm exists.
  g_dir = neuronmap::fuzz::make_scratch_dir("reader_fuzz");
  const std::string good = g_dir + "/good.h5";
  g_work = g_dir + "/work.h5";
  {
    neuronmap::detail::RunWriter writer(good, neuronmap::test::sample_info(), true);
    for (int i = 0; i < 3; ++i) writer.append(neuronmap::test::sample_snapshot(i));
    writer.close();
  }
  std::ifstream in(good, std::ios::binary);
  g_good_bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void edit_attribute(hid_t file, const char* name, std::uint32_t position, std::uint8_t value) {
  if (H5Aexists(file, name) > 0) H5Adelete(file, name);
  const unsigned how = value % 4;
  if (how == 0) return;  // deleted
  const hsize_t count[1] = {1 + position % 6};
  hid_t space = how == 3 ? H5Screate_simple(1, count, nullptr) : H5Screate(H5S_SCALAR);
  hid_t type = -1;
  std::vector<char> buffer;
  if (how == 1) {  // an integer, e.g. format_version 0, -5 or one newer than ours
    type = H5Tcopy(H5T_NATIVE_INT64);
    const std::int64_t v = static_cast<std::int64_t>(position % 256) - 128;
    buffer.resize(8);
    std::memcpy(buffer.data(), &v, 8);
  } else {  // fixed-length strings of another length, not terminated
    type = H5Tcopy(H5T_C_S1);
    const std::size_t width = 1 + (position >> 8) % 300;
    H5Tset_size(type, width);
    buffer.assign(width * (how == 3 ? count[0] : 1), static_cast<char>('a' + value % 26));
  }
  hid_t attr = H5Acreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  if (attr >= 0) {
    H5Awrite(attr, type, buffer.data());
    H5Aclose(attr);
  }
  H5Tclose(type);
  H5Sclose(space);
}

void edit_row(hid_t dset, unsigned operation, std::uint32_t position, std::uint8_t value) {
  hid_t type = H5Dget_type(dset);
  hid_t space = H5Dget_space(dset);
  const hssize_t rows = H5Sget_simple_extent_npoints(space);
  const std::size_t row_size = H5Tget_size(type);
  if (rows > 0 && row_size > 0 && row_size <= 4096) {
    // `position` picks the row and the byte in it.
    const hsize_t start[1] = {position % static_cast<hsize_t>(rows)}, count[1] = {1};
    const std::size_t at = (position / static_cast<std::size_t>(rows)) % row_size;
    hid_t one = H5Screate_simple(1, count, nullptr);
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, count, nullptr);
    std::vector<unsigned char> row(row_size);
    if (H5Dread(dset, type, one, space, H5P_DEFAULT, row.data()) >= 0) {
      if (operation == kXorByte) {
        row[at] ^= value == 0 ? 1 : value;
      } else if (operation == kSetByte) {
        row[at] = value;
      } else if (operation == kFillOnes) {
        for (std::size_t b = at; b < std::min(row_size, at + 8); ++b) row[b] = 0xff;
      } else {
        const std::int64_t v = static_cast<std::int64_t>(value) - 128;
        std::memcpy(row.data() + at, &v, std::min<std::size_t>(8, row_size - at));
      }
      H5Dwrite(dset, type, one, space, H5P_DEFAULT, row.data());
    }
    H5Sclose(one);
  }
  H5Sclose(space);
  H5Tclose(type);
}

// Writes the file to read: the good one with the input's byte flips, or else with its HDF5 edits.
// False if HDF5 refused to open or close it for the edits (then there is nothing to read).
bool prepare(const std::uint8_t* data, std::size_t size) {
  std::string bytes = g_good_bytes;
  bool flipped = false;
  for (std::size_t k = 0; k + 6 <= size; k += 6) {
    if ((data[k] >> 5) != kFlipFileByte) continue;
    std::uint32_t position = 0;
    std::memcpy(&position, data + k + 1, 4);
    bytes[position % std::min<std::size_t>(bytes.size(), 1 << 16)] ^= data[k + 5] == 0 ? 1 : data[k + 5];
    flipped = true;
  }
  std::ofstream(g_work, std::ios::binary | std::ios::trunc) << bytes;
  if (flipped) return true;

  hid_t file = H5Fopen(g_work.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  if (file < 0) return false;
  for (std::size_t k = 0; k + 6 <= size; k += 6) {
    const unsigned operation = data[k] >> 5;
    const unsigned target = data[k] & 0x1f;
    std::uint32_t position = 0;
    std::memcpy(&position, data + k + 1, 4);
    const std::uint8_t value = data[k + 5];
    if (operation == kAttribute) {
      edit_attribute(file, kAttributes[target % kAttributeCount], position, value);
      continue;
    }
    const char* table = kTables[target % kTableCount];
    if (operation == kDelete) {
      H5Ldelete(file, table, H5P_DEFAULT);
      continue;
    }
    hid_t dset = H5Dopen2(file, table, H5P_DEFAULT);
    if (dset < 0) continue;
    if (operation == kResize) {
      hid_t space = H5Dget_space(dset);
      const hsize_t rows = static_cast<hsize_t>(std::max<hssize_t>(0, H5Sget_simple_extent_npoints(space)));
      H5Sclose(space);
      const hsize_t extent[1] = {position % (rows + 4)};
      H5Dset_extent(dset, extent);
    } else {
      edit_row(dset, operation, position, value);
    }
    H5Dclose(dset);
  }
  return H5Fclose(file) >= 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  init();
  if (!prepare(data, size)) return 0;
  try {
    neuronmap::detail::RunReader reader(g_work);
    for (std::int64_t i = 0; i < reader.size(); ++i) {
      try {
        (void)reader.summary(i);
        (void)reader.snapshot_header(i);
        (void)reader.snapshot(i);
      } catch (const neuronmap::Error&) {
        // a damaged snapshot is refused; the others must still read
      }
    }
    (void)reader.refresh();
  } catch (const neuronmap::Error&) {
  }
  return 0;
}
