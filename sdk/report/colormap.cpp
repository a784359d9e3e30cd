// Colour tables. The cool-warm control points are Kenneth Moreland's CoolWarmFloat33 table from
// "Diverging Color Maps for Scientific Visualization" (2009), as also shipped by matplotlib.
#include "report/colormap.hpp"

#include <algorithm>
#include <array>
#include <cmath>

#include <fmt/format.h>

namespace neuronmap::report {
namespace {

constexpr std::array<std::array<double, 3>, 33> kCoolWarm = {{
    {0.2298057, 0.298717966, 0.753683153},   {0.26623388, 0.353094838, 0.801466763},
    {0.30386891, 0.406535296, 0.84495867},   {0.342804478, 0.458757618, 0.883725899},
    {0.38301334, 0.50941904, 0.917387822},   {0.424369608, 0.558148092, 0.945619588},
    {0.46666708, 0.604562568, 0.968154911},  {0.509635204, 0.648280772, 0.98478814},
    {0.552953156, 0.688929332, 0.995375608}, {0.596262162, 0.726149107, 0.999836203},
    {0.639176211, 0.759599947, 0.998151185}, {0.681291281, 0.788964712, 0.990363227},
    {0.722193294, 0.813952739, 0.976574709}, {0.761464949, 0.834302879, 0.956945269},
    {0.798691636, 0.849786142, 0.931688648}, {0.833466556, 0.860207984, 0.901068838},
    {0.865395197, 0.86541021, 0.865395561},  {0.897787179, 0.848937047, 0.820880546},
    {0.924127593, 0.827384882, 0.774508472}, {0.944468518, 0.800927443, 0.726736146},
    {0.958852946, 0.769767752, 0.678007945}, {0.96732803, 0.734132809, 0.628751763},
    {0.969954137, 0.694266682, 0.579375448}, {0.966811177, 0.650421156, 0.530263762},
    {0.958003065, 0.602842431, 0.481775914}, {0.943660866, 0.551750968, 0.434243684},
    {0.923944917, 0.49730856, 0.387970225},  {0.89904617, 0.439559467, 0.343229596},
    {0.869186849, 0.378313092, 0.300267182}, {0.834620542, 0.312874446, 0.259301199},
    {0.795631745, 0.24128379, 0.220525627},  {0.752534934, 0.157246067, 0.184115123},
    {0.705673158, 0.01555616, 0.150232812},
}};

// matplotlib's viridis at 10 evenly spaced points, linearly interpolated between them.
constexpr std::array<std::uint32_t, 10> kViridis = {0x440154, 0x482878, 0x3e4989, 0x31688e, 0x26828e,
                                                    0x1f9e89, 0x35b779, 0x6ece58, 0xb5de2b, 0xfde725};

constexpr std::array<std::uint32_t, 20> kTableau20 = {
    0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd, 0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf,
    0xaec7e8, 0xffbb78, 0x98df8a, 0xff9896, 0xc5b0d5, 0xc49c94, 0xf7b6d2, 0xc7c7c7, 0xdbdb8d, 0x9edae5};

Rgb from_hex(std::uint32_t v) {
  return {((v >> 16) & 0xff) / 255.0, ((v >> 8) & 0xff) / 255.0, (v & 0xff) / 255.0};
}

Rgb from_hsv(double h, double s, double v) {
  const double c = v * s;
  const double hp = std::fmod(h, 360.0) / 60.0;
  const double x = c * (1 - std::fabs(std::fmod(hp, 2.0) - 1));
  double r = 0, g = 0, b = 0;
  if (hp < 1) r = c, g = x;
  else if (hp < 2) r = x, g = c;
  else if (hp < 3) g = c, b = x;
  else if (hp < 4) g = x, b = c;
  else if (hp < 5) r = x, b = c;
  else r = c, b = x;
  const double m = v - c;
  return {r + m, g + m, b + m};
}

std::uint8_t byte(double v) { return static_cast<std::uint8_t>(std::lround(std::clamp(v, 0.0, 1.0) * 255.0)); }

}  // namespace

std::string Rgb::hex() const { return fmt::format("#{:02x}{:02x}{:02x}", byte(r), byte(g), byte(b)); }

std::uint32_t Rgb::argb() const {
  return 0xff000000u | (std::uint32_t{byte(r)} << 16) | (std::uint32_t{byte(g)} << 8) | byte(b);
}

Rgb cool_warm(double t) {
  if (!(t >= 0.0)) t = 0.0;  // also NaN
  if (t > 1.0) t = 1.0;
  const double pos = t * (kCoolWarm.size() - 1);
  const auto i = std::min<std::size_t>(static_cast<std::size_t>(pos), kCoolWarm.size() - 2);
  const double f = pos - static_cast<double>(i);
  const auto& a = kCoolWarm[i];
  const auto& b = kCoolWarm[i + 1];
  return {a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]), a[2] + f * (b[2] - a[2])};
}

Rgb viridis(double t) {
  if (!(t >= 0.0)) t = 0.0;
  if (t > 1.0) t = 1.0;
  const double pos = t * (kViridis.size() - 1);
  const auto i = std::min<std::size_t>(static_cast<std::size_t>(pos), kViridis.size() - 2);
  const double f = pos - static_cast<double>(i);
  const Rgb a = from_hex(kViridis[i]), b = from_hex(kViridis[i + 1]);
  return {a.r + f * (b.r - a.r), a.g + f * (b.g - a.g), a.b + f * (b.b - a.b)};
}

Rgb correlation_color(double r) { return std::isnan(r) ? nan_color() : cool_warm((r + 1.0) / 2.0); }

Rgb nan_color() { return {1.0, 1.0, 1.0}; }

Rgb group_color(int id) {
  if (id < 0) return {0.72, 0.72, 0.72};
  if (id < static_cast<int>(kTableau20.size())) return from_hex(kTableau20[static_cast<std::size_t>(id)]);
  // Golden-angle steps keep neighbouring ids apart; two value levels double the distinct colours.
  return from_hsv(static_cast<double>(id) * 137.508, 0.65, id % 2 == 0 ? 0.85 : 0.6);
}

Rgb series_color(int i) { return from_hex(kTableau20[static_cast<std::size_t>(i % 10)]); }

}  // namespace neuronmap::report
