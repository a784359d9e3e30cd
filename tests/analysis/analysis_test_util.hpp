// Helpers for the analysis tests: .npy and JSON reading, planted-group data, oracle paths.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <rapidjson/document.h>

#include "analysis/correlation.hpp"

namespace neuronmap::test {

inline std::string shared_dir() { return NEURONMAP_SHARED_DIR; }
inline std::string oracle_case_dir(const std::string& name) { return shared_dir() + "/oracle/cases/synthetic/" + name; }
inline bool file_exists(const std::string& path) { return std::ifstream(path).good(); }

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

inline rapidjson::Document read_json_text(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse(text.c_str());
  if (doc.HasParseError()) throw std::runtime_error("bad JSON: " + text.substr(0, 200));
  return doc;
}
inline rapidjson::Document read_json(const std::string& path) { return read_json_text(read_text(path)); }

template <typename T = std::int32_t>
std::vector<T> int_array(const rapidjson::Value& v) {
  std::vector<T> out;
  for (const auto& e : v.GetArray()) out.push_back(static_cast<T>(e.GetInt64()));
  return out;
}

/// A 2-D .npy of '<f4' or '<f8' (format 1.0, C or Fortran order), as float64 samples x neurons.
inline Eigen::MatrixXd read_npy(const std::string& path) {
  const std::string bytes = read_text(path);
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) throw std::runtime_error(path + ": not .npy");
  const auto header_len = static_cast<std::size_t>(static_cast<unsigned char>(bytes[8]) |
                                                   (static_cast<unsigned char>(bytes[9]) << 8));
  const std::string header = bytes.substr(10, header_len);
  const bool f4 = header.find("'<f4'") != std::string::npos;
  if (!f4 && header.find("'<f8'") == std::string::npos) throw std::runtime_error(path + ": not f4/f8");
  const bool fortran = header.find("'fortran_order': True") != std::string::npos;
  const auto open = header.find('('), close = header.find(')');
  std::vector<std::int64_t> shape;
  std::stringstream dims(header.substr(open + 1, close - open - 1));
  for (std::string part; std::getline(dims, part, ',');) {
    if (part.find_first_not_of(' ') != std::string::npos) shape.push_back(std::stoll(part));
  }
  if (shape.size() == 1) shape.push_back(1);
  const std::int64_t rows = shape[0], cols = shape[1];
  Eigen::MatrixXd out(rows, cols);
  const char* data = bytes.data() + 10 + header_len;
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; ++c) {
      const std::int64_t at = fortran ? c * rows + r : r * cols + c;
      if (f4) {
        float v;
        std::memcpy(&v, data + 4 * at, 4);
        out(r, c) = v;
      } else {
        double v;
        std::memcpy(&v, data + 8 * at, 8);
        out(r, c) = v;
      }
    }
  }
  return out;
}

/// Planted groups: k latent factors + noise, background neurons with their own noise, dead neurons
/// (constant 0.0 and constant 0.3), exact duplicates of planted neurons (ties), columns permuted.
struct Planted {
  Eigen::MatrixXd x;                 ///< samples x neurons
  std::vector<std::int32_t> truth;   ///< planted group id or -1
  std::vector<std::int32_t> dead;    ///< indices of dead neurons
};

inline Planted make_planted(std::int64_t samples, const std::vector<int>& group_sizes, int background, int dead_zero,
                            int dead_const, int duplicates, double noise, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> loading(0.8, 1.2);
  std::vector<Eigen::VectorXd> columns;
  std::vector<std::int32_t> truth;
  std::vector<bool> is_dead;
  for (std::size_t g = 0; g < group_sizes.size(); ++g) {
    Eigen::VectorXd factor(samples);
    for (auto& v : factor) v = normal(rng);
    for (int m = 0; m < group_sizes[g]; ++m) {
      Eigen::VectorXd c(samples);
      const double a = loading(rng), offset = normal(rng) * 3;
      for (std::int64_t s = 0; s < samples; ++s) c(s) = offset + a * factor(s) + noise * normal(rng);
      columns.push_back(c);
      truth.push_back(static_cast<std::int32_t>(g));
      is_dead.push_back(false);
    }
  }
  const std::size_t planted = columns.size();
  for (int d = 0; d < duplicates; ++d) {
    const std::size_t source = static_cast<std::size_t>(d * 7) % planted;
    columns.push_back(columns[source]);
    truth.push_back(truth[source]);
    is_dead.push_back(false);
  }
  for (int b = 0; b < background; ++b) {
    Eigen::VectorXd c(samples);
    for (auto& v : c) v = normal(rng);
    columns.push_back(c);
    truth.push_back(-1);
    is_dead.push_back(false);
  }
  for (int d = 0; d < dead_zero + dead_const; ++d) {
    columns.push_back(Eigen::VectorXd::Constant(samples, d < dead_zero ? 0.0 : 0.3));
    truth.push_back(-1);
    is_dead.push_back(true);
  }
  std::vector<std::size_t> order(columns.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  Planted out;
  out.x.resize(samples, static_cast<Eigen::Index>(columns.size()));
  for (std::size_t i = 0; i < order.size(); ++i) {
    out.x.col(static_cast<Eigen::Index>(i)) = columns[order[i]];
    out.truth.push_back(truth[order[i]]);
    if (is_dead[order[i]]) out.dead.push_back(static_cast<std::int32_t>(i));
  }
  return out;
}

/// A Correlation built from a given symmetric matrix (no samples behind it).
inline detail::Correlation correlation_of_matrix(const Eigen::MatrixXd& c, std::int64_t n_samples = 100) {
  detail::Correlation out;
  const auto n = c.rows();
  out.r = detail::CorrelationMatrix(n, detail::Precision::f64);
  out.r.f64() = c;
  out.dead.assign(static_cast<std::size_t>(n), 0);
  out.stddev = Eigen::VectorXd::Ones(n);
  out.mean = Eigen::VectorXd::Zero(n);
  out.n_samples = n_samples;
  return out;
}

}  // namespace neuronmap::test
