// Colours: Moreland's cool-warm diverging map for correlations, viridis for activations, a categorical palette for groups.
#pragma once

#include <cstdint>
#include <string>

namespace neuronmap::report {

struct Rgb {
  double r = 0, g = 0, b = 0;  ///< 0..1
  std::string hex() const;
  std::uint32_t argb() const;  ///< opaque, for cairo image surfaces
};

/// Moreland's "CoolWarmFloat33" diverging map (blue - light grey - red), t in [0, 1], clamped.
Rgb cool_warm(double t);
/// matplotlib's sequential "viridis" (dark purple - green - yellow), t in [0, 1], clamped; for activations.
Rgb viridis(double t);
/// A correlation in [-1, 1] on the cool-warm map; NaN gets nan_color().
Rgb correlation_color(double r);
Rgb nan_color();

/// Group `id`'s colour: Tableau 10, then its light variants, then golden-angle hues. -1: ungrouped grey.
Rgb group_color(int id);
/// A series colour for the i-th layer in timelines (distinct from nothing in particular: Tableau 10).
Rgb series_color(int i);

}  // namespace neuronmap::report
