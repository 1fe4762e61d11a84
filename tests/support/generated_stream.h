#pragma once
// GeneratedStream: a reproducible event stream that every shipped rule (patterns/) finds
// matches in, for tests that compare runs over the same input.

#include <cstdint>
#include <cstdio>
#include <iterator>
#include <string>

namespace vigil::testing {

// Card and account activity over a dozen cards, with out-of-order arrival (some of it
// late) and events missing their keys, from a fixed seed: every shipped rule finds matches.
inline std::string GeneratedStream(size_t events, uint64_t seed) {
  std::string out;
  uint64_t state = seed;
  auto next = [&state](uint64_t bound) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (state >> 33) % bound;
  };
  // Weighted: logouts are rare, so a brute-force run is seldom cut off by one.
  static const char* kTypes[] = {"payment", "payment", "payment", "payment", "payment",
                                 "refund",  "transfer", "transfer", "login",  "login",
                                 "login",   "password_reset"};
  static const char* kCountries[] = {"US", "DE", "FR", "BR"};
  auto flag = [&next] { return next(2) == 0 ? "true" : "false"; };
  int64_t clock = 1717200000000;
  for (size_t i = 0; i < events; ++i) {
    clock += static_cast<int64_t>(next(400));
    const int64_t ts = clock - static_cast<int64_t>(next(4) == 0 ? next(20000) : 0);
    if (next(50) == 0) {
      out += "{\"ts\":" + std::to_string(ts) + "}\n";
      continue;
    }
    const uint64_t card = next(12);
    const double amount = next(3) == 0 ? 1 + next(400) / 100.0 : next(100000) / 100.0;
    char line[400];
    std::snprintf(line, sizeof line,
                  "{\"ts\":%lld,\"card_id\":\"c%02llu\",\"account_id\":\"a%02llu\","
                  "\"user\":\"u%02llu\",\"type\":\"%s\",\"amount\":%.2f,\"country\":\"%s\","
                  "\"card_present\":%s,\"new_device\":%s,\"success\":%s,\"direction\":\"%s\"}\n",
                  static_cast<long long>(ts), static_cast<unsigned long long>(card),
                  static_cast<unsigned long long>(card % 13), static_cast<unsigned long long>(card % 7),
                  next(400) == 0 ? "logout" : kTypes[next(std::size(kTypes))], amount, kCountries[next(4)], flag(), flag(), flag(),
                  next(2) == 0 ? "in" : "out");
    out += line;
  }
  return out;
}

}  // namespace vigil::testing
