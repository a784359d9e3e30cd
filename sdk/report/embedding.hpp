// Neurons placed in 2-D: PCA (Eigen) of their correlation rows, or seeded t-SNE.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "neuronmap/snapshot.hpp"

namespace neuronmap::report {

struct Embedding {
  std::string method;                 ///< e.g. "PCA of correlation rows"
  std::string x_label, y_label;
  std::vector<std::int32_t> neurons;  ///< the neurons placed (all of them, unless `note` says otherwise)
  std::vector<double> x, y;           ///< parallel to `neurons`
  std::string note;                   ///< e.g. that t-SNE placed a seeded sample of a large layer
};

/// Principal components of the rows of a row-major `rows x cols` matrix (NaN read as 0): the first
/// `k` scores per row and the fraction of the total variance each explains. Exact for small
/// matrices, randomised subspace iteration (seeded) for large ones.
struct Pca {
  std::vector<std::vector<double>> scores;  ///< k vectors of `rows` scores
  std::vector<double> explained;            ///< k fractions
};
Pca principal_components(const float* data, std::int64_t rows, std::int64_t cols, int k, std::uint64_t seed);

/// Exact t-SNE (perplexity 30 or less for small inputs, PCA initialisation, seeded): `points` is
/// row-major `rows x dims`; returns 2 coordinates per row.
std::vector<std::array<double, 2>> tsne(const std::vector<double>& points, std::int64_t rows, std::int64_t dims,
                                        std::uint64_t seed);

/// Where each neuron of `layer` goes in the scatter: PCA of the correlation rows (t-SNE if asked);
/// without a stored matrix, PCA of the standardised neuron statistics. nullopt below 2 neurons.
std::optional<Embedding> embed_layer(const LayerSnapshot& layer, bool use_tsne, std::uint64_t seed);

/// Most neurons t-SNE places; larger layers are sampled (seeded).
inline constexpr std::int64_t kTsneMaxPoints = 1000;

}  // namespace neuronmap::report
