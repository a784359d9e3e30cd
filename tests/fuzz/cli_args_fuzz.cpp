// libFuzzer target for the `neuronmap` command line (sdk/cli): the input, split at NUL and newline
// bytes, is the argument list, run in-process through run_command_line, the function `main` calls.
// Every verb is registered; they find a small valid run file, a samples file, a damaged and an empty
// file in the scratch directory the fuzzer runs in (so seeds reach real work, not only the parser).
// The answer must be an exit code of 0, 1 or 2 with a message: never a crash or a sanitizer report.
// Paths cannot leave the scratch directory: ".." becomes "__" and a '/' that would start an absolute
// path (first in an argument, or after '=' or ',') becomes '_'.
// Build and run: scripts/fuzz (clang, -fsanitize=fuzzer,address,undefined).
#include <hdf5.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include "cli/verbs.hpp"
#include "sample_run.hpp"
#include "scratch.hpp"
#include "store/run_file.hpp"

namespace {

constexpr std::size_t kMaxArgs = 64;

std::string g_dir;

void write_samples(const std::string& path) {
  hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  const hsize_t dims[2] = {16, 6};
  std::vector<float> f(16 * 6);
  std::vector<double> d(16 * 6);
  for (std::size_t i = 0; i < f.size(); ++i) {
    f[i] = static_cast<float>((i * 37 % 11) * 0.25 + (i % 6 < 3 ? 0.1 * (i / 6) : 0.0));
    d[i] = f[i];
  }
  hid_t space = H5Screate_simple(2, dims, nullptr);
  for (const auto& [name, type, data] :
       {std::tuple{"x", H5T_NATIVE_FLOAT, static_cast<const void*>(f.data())},
        std::tuple{"d", H5T_NATIVE_DOUBLE, static_cast<const void*>(d.data())}}) {
    hid_t dset = H5Dcreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    H5Dclose(dset);
  }
  H5Sclose(space);
  H5Fclose(file);
}

void init() {
  if (!g_dir.empty()) return;
  g_dir = neuronmap::fuzz::make_scratch_dir("cli_fuzz");
  std::filesystem::current_path(g_dir);
  for (const char* name : {"run.h5", "run2.h5"}) {
    neuronmap::detail::RunWriter writer(name, neuronmap::test::sample_info(), true);
    writer.append(neuronmap::test::sample_snapshot(name[3] == '.' ? 0 : 1));
    writer.append(neuronmap::test::sample_snapshot(2));
    writer.close();
  }
  write_samples("samples.h5");
  std::ofstream("bad.h5") << "\x89HDF\r\n\x1a\nnot really an HDF5 file, only its signature";
  std::ofstream("empty.h5");
  std::filesystem::create_directories("dir");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  init();
  std::vector<std::string> args = {"neuronmap"};
  std::string current;
  for (std::size_t i = 0; i <= size; ++i) {
    if (i == size || data[i] == '\0' || data[i] == '\n') {
      if (args.size() < kMaxArgs) args.push_back(current);
      current.clear();
      continue;
    }
    char c = static_cast<char>(data[i]);
    if (c == '/' && (current.empty() || current.back() == '=' || current.back() == ',')) c = '_';
    if (c == '.' && !current.empty() && current.back() == '.') current.back() = c = '_';
    current += c;
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int code = neuronmap::cli::run_command_line(static_cast<int>(args.size()), argv.data());
  if (code != 0 && code != neuronmap::cli::kUsageExit && code != neuronmap::cli::kErrorExit) std::abort();
  // A verb may have changed directory or left files: start the next input from the same place.
  std::error_code ec;
  std::filesystem::current_path(g_dir, ec);
  return 0;
}
