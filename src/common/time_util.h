#pragma once
// Parsing of the two time notations users write: durations ("10m") and instants (RFC 3339).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace vigil {

inline constexpr int64_t kMaxTimeMs = INT64_MAX;
inline constexpr int64_t kMinTimeMs = INT64_MIN;

// a + b and a - b, clamped to [kMinTimeMs, kMaxTimeMs] instead of overflowing: event time
// runs to the end of time when a bounded input ends.
inline int64_t SaturatingAdd(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? kMaxTimeMs : kMinTimeMs;
  return r;
}
inline int64_t SaturatingSub(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) return b < 0 ? kMaxTimeMs : kMinTimeMs;
  return r;
}

// Milliseconds since the Unix epoch (wall clock: for timestamps people read).
int64_t WallClockMs();
// Milliseconds of a monotonic clock (for measuring intervals; never goes back).
int64_t SteadyClockMs();

// Parses `NNNms`, `NNs`, `NNm`, `NNh`, `NNd` or a bare integer of milliseconds.
// Returns nullopt for anything else, including negative values and overflow.
std::optional<int64_t> ParseDurationMs(std::string_view text);

// Formats epoch milliseconds as RFC 3339 in UTC with milliseconds: "2024-05-01T12:00:00.250Z".
std::string FormatRfc3339Ms(int64_t ms);

// Parses an RFC 3339 date-time ("2024-05-01T12:00:00.250Z", "...+02:00") into epoch
// milliseconds. Fractions beyond milliseconds are truncated. Returns nullopt when malformed.
std::optional<int64_t> ParseRfc3339Ms(std::string_view text);

}  // namespace vigil
