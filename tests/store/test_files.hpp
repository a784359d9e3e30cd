// Files for the store tests: a fresh directory per test, and good, damaged and foreign run files.
#pragma once

#include <hdf5.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "sample_run.hpp"
#include "test_dir.hpp"
#include "store/run_file.hpp"

namespace neuronmap::test {

namespace fs = std::filesystem;

/// A fresh, empty directory named after the running test.
inline std::string test_dir() { return fresh_test_dir("store_tmp"); }

/// A closed run file holding snapshots 0..n-1 of sample_snapshot().
inline void write_sample_run(const std::string& path, std::int64_t n) {
  detail::RunWriter writer(path, sample_info(), true);
  for (std::int64_t i = 0; i < n; ++i) writer.append(sample_snapshot(i));
  writer.close();
}

/// A plain HDF5 file with a dataset but none of our attributes.
inline void write_foreign_hdf5(const std::string& path) {
  hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  hsize_t dims[1] = {4};
  hid_t space = H5Screate_simple(1, dims, nullptr);
  hid_t dset = H5Dcreate2(file, "values", H5T_NATIVE_INT, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  int values[4] = {1, 2, 3, 4};
  H5Dwrite(dset, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values);
  H5Dclose(dset);
  H5Sclose(space);
  H5Fclose(file);
}

/// Rewrites the format_version attribute of a closed run file.
inline void set_format_version(const std::string& path, std::int64_t version) {
  hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  hid_t attr = H5Aopen(file, "format_version", H5P_DEFAULT);
  ASSERT_GE(attr, 0);
  H5Awrite(attr, H5T_NATIVE_INT64, &version);
  H5Aclose(attr);
  H5Fclose(file);
}

inline void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

/// A copy of `from` cut to `keep` bytes.
inline void write_truncated_copy(const std::string& from, const std::string& to, std::uintmax_t keep) {
  fs::copy_file(from, to, fs::copy_options::overwrite_existing);
  fs::resize_file(to, keep);
}

}  // namespace neuronmap::test
