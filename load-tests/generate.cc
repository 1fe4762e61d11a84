// vigil-generate: a deterministic NDJSON event stream for vigil's load tests.
//
//   vigil-generate --events N --keys K --seed S [--fraud-rate R] [--start-ms T]
//                  [--zipf S] [--max-step-ms M]
//
// Writes N card events to standard output, one JSON object per line, in event-time order.
// Each line has these fields, always in this order:
//
//   {"card_id":"c000123456","ts":1717200000123,"amount":42.17,"merchant":"m0421",
//    "country":"US","type":"payment","card_present":true,"account_id":"a000061728",
//    "user":"u000061728","device":"d3f9a0c12"}
//
// The model:
//   1. One global clock starts at --start-ms and advances by a uniform step in
//      [0, --max-step-ms) before each ordinary event, so `ts` never decreases.
//   2. Each ordinary event belongs to a card drawn uniformly from K cards, or, with
//      --zipf S, from a Zipf(S) distribution over them (the hot cards are spread over the
//      id range, not packed at its start).
//   3. A card has a home country (95% of its events), belongs to account and user
//      card / 2 (two cards per account), and the user has a usual device (97% of events).
//   4. Types: payment 86%, refund 3%, transfer 4%, login 5%, logout 2%. Amounts are mostly
//      5 to 300 with a long tail up to 5000 and a few charges under 5.
//   5. With probability R per step, the step starts a fraud instance instead of an
//      ordinary event: a card-testing burst (3-5 payments under 5, then one over 500, all
//      within 7 minutes), impossible travel (two card-present payments in different
//      countries 5-50 minutes apart) or a velocity burst (12 payments within 40 seconds).
//      Its events are queued at future times and merged into the stream in order.
//   6. Output stops after exactly N lines; fraud events still queued are dropped.
//
// Determinism: the output depends only on the arguments. All randomness comes from
// xoshiro256** seeded through splitmix64, and the generator uses integer arithmetic only
// (the Zipf weights are computed in fixed point), so no libm or floating-point
// contraction differences between machines can change a byte.

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <queue>
#include <string>
#include <string_view>
#include <vector>

namespace {

using u64 = std::uint64_t;
using i64 = std::int64_t;
__extension__ typedef unsigned __int128 u128;

// ---------------------------------------------------------------------------------------
// Random numbers.

// splitmix64 step: seeds the main generator and hashes per-card attributes.
u64 Mix(u64 x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// xoshiro256** (Blackman and Vigna), seeded from splitmix64 as its authors recommend.
class Rng {
 public:
  explicit Rng(u64 seed) {
    u64 x = seed;
    for (u64& word : s_) {
      word = Mix(x);
      x += 0x9e3779b97f4a7c15ULL;
    }
  }

  u64 Next() {
    const u64 result = std::rotl(s_[1] * 5, 7) * 9;
    const u64 t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = std::rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, n) by the multiply-shift method; the bias is below n / 2^64.
  u64 Below(u64 n) { return static_cast<u64>((static_cast<u128>(Next()) * n) >> 64); }

  // Uniform in [lo, hi].
  i64 Between(i64 lo, i64 hi) { return lo + static_cast<i64>(Below(static_cast<u64>(hi - lo + 1))); }

  // In [lo, hi], skewed towards lo: lo + (hi - lo) * u^2 for u uniform in [0, 1).
  i64 SkewedBetween(i64 lo, i64 hi) {
    const u64 u = Next() >> 32;
    const u64 u2 = (u * u) >> 32;
    return lo + static_cast<i64>((u2 * static_cast<u64>(hi - lo)) >> 32);
  }

 private:
  std::array<u64, 4> s_;
};

// ---------------------------------------------------------------------------------------
// Zipf key sampling in fixed point, so the table is the same on every machine.

// log2(x) for x >= 1, as a Q32 fixed-point number (integer part in the high bits).
u64 Log2Q32(u64 x) {
  const int whole = 63 - std::countl_zero(x);
  // Mantissa x / 2^whole in [1, 2), as Q31.
  u64 m = whole >= 31 ? x >> (whole - 31) : x << (31 - whole);
  u64 frac = 0;
  // Squaring the mantissa doubles its logarithm; each overflow past 2 yields one bit.
  for (int bit = 31; bit >= 0; --bit) {
    m = (m * m) >> 31;
    if (m >= (u64{1} << 32)) {
      m >>= 1;
      frac |= u64{1} << bit;
    }
  }
  return (static_cast<u64>(whole) << 32) | frac;
}

u64 Isqrt(u128 v) {
  u128 root = 0;
  u128 bit = static_cast<u128>(1) << 126;
  while (bit > v) bit >>= 2;
  while (bit != 0) {
    if (v >= root + bit) {
      v -= root + bit;
      root = (root >> 1) + bit;
    } else {
      root >>= 1;
    }
    bit >>= 2;
  }
  return static_cast<u64>(root);
}

// 2^-t for t in Q32, as Q62.
class Exp2Neg {
 public:
  Exp2Neg() {
    // root_[i] = 2^(-2^-(i+1)) in Q62: the square root of 1/2, then repeated square roots.
    root_[0] = Isqrt(static_cast<u128>(1) << 123);
    for (int i = 1; i < 32; ++i) root_[i] = Isqrt(static_cast<u128>(root_[i - 1]) << 62);
  }

  u64 operator()(u64 t_q32) const {
    const u64 whole = t_q32 >> 32;
    if (whole >= 62) return 0;
    u64 w = u64{1} << 62;
    for (int i = 0; i < 32; ++i) {
      if ((t_q32 >> (31 - i)) & 1) w = static_cast<u64>((static_cast<u128>(w) * root_[i]) >> 62);
    }
    return w >> whole;
  }

 private:
  std::array<u64, 32> root_{};
};

class KeySampler {
 public:
  // exponent_q32 == 0 selects uniform keys.
  KeySampler(u64 keys, u64 exponent_q32) : keys_(keys) {
    if (exponent_q32 == 0) return;
    // Scale so that the sum of keys_ weights, each at most 2^scale, stays below 2^63.
    const int scale = 62 - static_cast<int>(std::bit_width(keys_));
    const Exp2Neg exp2neg;
    cumulative_.resize(keys_);
    u64 total = 0;
    for (u64 rank = 0; rank < keys_; ++rank) {
      const u64 t = static_cast<u64>((static_cast<u128>(exponent_q32) * Log2Q32(rank + 1)) >> 32);
      total += exp2neg(t) >> (62 - scale);
      cumulative_[rank] = total;
    }
  }

  u64 Sample(Rng& rng) const {
    if (cumulative_.empty()) return rng.Below(keys_);
    const u64 r = rng.Below(cumulative_.back());
    const u64 rank = static_cast<u64>(std::upper_bound(cumulative_.begin(), cumulative_.end(), r) -
                                      cumulative_.begin());
    // A prime above the largest key count permutes ranks over the whole id range.
    return static_cast<u64>((static_cast<u128>(rank) * 2654435761ULL) % keys_);
  }

 private:
  u64 keys_;
  std::vector<u64> cumulative_;
};

// ---------------------------------------------------------------------------------------
// The event model.

constexpr std::array<std::string_view, 12> kCountries = {"US", "GB", "DE", "FR", "ES", "IT",
                                                          "NL", "CA", "AU", "JP", "BR", "IN"};
// Share of cards at home in each country, in percent (sums to 100).
constexpr std::array<int, 12> kHomeShare = {30, 10, 10, 8, 6, 6, 5, 6, 5, 6, 4, 4};

enum Type : std::uint8_t { kPayment, kRefund, kTransfer, kLogin, kLogout };
constexpr std::array<std::string_view, 5> kTypeNames = {"payment", "refund", "transfer", "login",
                                                        "logout"};

constexpr int kMerchants = 1000;

struct Event {
  i64 ts = 0;
  u64 seq = 0;  // tie-break for queued events with equal ts: insertion order
  u64 card = 0;
  i64 amount_cents = 0;
  std::uint32_t device = 0;
  std::uint16_t merchant = 0;  // 1..kMerchants
  std::uint8_t country = 0;
  Type type = kPayment;
  bool card_present = false;
};

struct LaterFirst {
  bool operator()(const Event& a, const Event& b) const {
    return a.ts != b.ts ? a.ts > b.ts : a.seq > b.seq;
  }
};

class Model {
 public:
  Model(u64 seed, u64 keys, u64 zipf_q32) : seed_(seed), keys_(keys, zipf_q32) {}

  u64 DrawCard(Rng& rng) const { return keys_.Sample(rng); }

  std::uint8_t HomeCountry(u64 card) const {
    int pick = static_cast<int>(Mix(seed_ ^ (card * 0x2545f4914f6cdd1dULL)) % 100);
    for (std::uint8_t i = 0; i < kHomeShare.size(); ++i) {
      if (pick < kHomeShare[i]) return i;
      pick -= kHomeShare[i];
    }
    return 0;
  }

  std::uint32_t UsualDevice(u64 user) const {
    return static_cast<std::uint32_t>(Mix(~seed_ ^ (user * 0x9e3779b97f4a7c15ULL)));
  }

  std::uint8_t OtherCountry(Rng& rng, std::uint8_t home) const {
    const auto other = static_cast<std::uint8_t>(rng.Below(kCountries.size() - 1));
    return other >= home ? static_cast<std::uint8_t>(other + 1) : other;
  }

  // Everything but ts and seq, for an ordinary event of `card`.
  Event Ordinary(Rng& rng, u64 card) const {
    Event e;
    e.card = card;
    const u64 roll = rng.Below(100);
    e.type = roll < 86 ? kPayment : roll < 89 ? kRefund : roll < 93 ? kTransfer : roll < 98 ? kLogin : kLogout;
    switch (e.type) {
      case kPayment:
      case kRefund:
        e.amount_cents = OrdinaryAmount(rng);
        e.card_present = rng.Below(100) < (e.type == kPayment ? 55 : 30);
        break;
      case kTransfer:
        e.amount_cents = rng.SkewedBetween(2000, 200000);
        break;
      case kLogin:
      case kLogout:
        break;
    }
    e.merchant = static_cast<std::uint16_t>(1 + rng.Below(kMerchants));
    const std::uint8_t home = HomeCountry(card);
    e.country = rng.Below(100) < 95 ? home : OtherCountry(rng, home);
    e.device = rng.Below(100) < 97 ? UsualDevice(card / 2) : static_cast<std::uint32_t>(rng.Next());
    return e;
  }

  Event Payment(Rng& rng, u64 card, i64 amount_cents, bool card_present) const {
    Event e = Ordinary(rng, card);
    e.type = kPayment;
    e.amount_cents = amount_cents;
    e.card_present = card_present;
    return e;
  }

  static i64 OrdinaryAmount(Rng& rng) {
    const u64 bucket = rng.Below(1000);
    if (bucket < 10) return rng.Between(50, 499);                 // 1%: under 5
    if (bucket < 70) return rng.SkewedBetween(30000, 500000);     // 6%: the long tail
    return rng.SkewedBetween(500, 30000);                         // 93%: 5 to 300
  }

 private:
  u64 seed_;
  KeySampler keys_;
};

// Queues the events of one fraud instance, the first at `now`, the rest later.
template <typename Queue>
void InjectFraud(Rng& rng, const Model& model, i64 now, u64& seq, Queue& queue) {
  const u64 card = model.DrawCard(rng);
  auto push = [&](Event e, i64 ts) {
    e.ts = ts;
    e.seq = seq++;
    queue.push(e);
  };
  switch (rng.Below(3)) {
    case 0: {  // card testing
      const int small = static_cast<int>(rng.Between(3, 5));
      const auto merchant = static_cast<std::uint16_t>(1 + rng.Below(kMerchants));
      i64 t = now;
      for (int i = 0; i < small; ++i) {
        if (i > 0) t += rng.Between(5000, 60000);
        Event e = model.Payment(rng, card, rng.Between(50, 499), false);
        e.merchant = merchant;
        e.country = model.HomeCountry(card);
        push(e, t);
      }
      t += rng.Between(30000, 180000);
      Event large = model.Payment(rng, card, rng.Between(50001, 250000), false);
      large.country = model.HomeCountry(card);
      push(large, t);
      break;
    }
    case 1: {  // impossible travel
      const std::uint8_t home = model.HomeCountry(card);
      Event first = model.Payment(rng, card, Model::OrdinaryAmount(rng), true);
      first.country = home;
      push(first, now);
      Event second = model.Payment(rng, card, Model::OrdinaryAmount(rng), true);
      second.country = model.OtherCountry(rng, home);
      push(second, now + rng.Between(5 * 60000, 50 * 60000));
      break;
    }
    default: {  // velocity: 12 payments, 11 gaps of at most 3.636 s
      i64 t = now;
      for (int i = 0; i < 12; ++i) {
        if (i > 0) t += rng.Between(1000, 3636);
        push(model.Payment(rng, card, Model::OrdinaryAmount(rng), false), t);
      }
      break;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Output.

class Writer {
 public:
  Writer() : buffer_(kCapacity) {}
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;
  ~Writer() { Flush(); }

  void Write(const Event& e) {
    if (kCapacity - used_ < kMaxLine) Flush();
    char* p = buffer_.data() + used_;
    p = Put(p, R"({"card_id":"c)");
    p = PutFixed(p, e.card, 9);
    p = Put(p, R"(","ts":)");
    p = std::to_chars(p, p + 20, e.ts).ptr;
    p = Put(p, R"(,"amount":)");
    p = std::to_chars(p, p + 20, e.amount_cents / 100).ptr;
    *p++ = '.';
    p = PutFixed(p, static_cast<u64>(e.amount_cents % 100), 2);
    p = Put(p, R"(,"merchant":"m)");
    p = PutFixed(p, e.merchant, 4);
    p = Put(p, R"(","country":")");
    p = Put(p, kCountries[e.country]);
    p = Put(p, R"(","type":")");
    p = Put(p, kTypeNames[e.type]);
    p = Put(p, e.card_present ? R"(","card_present":true,"account_id":"a)"
                              : R"(","card_present":false,"account_id":"a)");
    p = PutFixed(p, e.card / 2, 9);
    p = Put(p, R"(","user":"u)");
    p = PutFixed(p, e.card / 2, 9);
    p = Put(p, R"(","device":"d)");
    p = PutHex8(p, e.device);
    p = Put(p, "\"}\n");
    used_ = static_cast<size_t>(p - buffer_.data());
  }

  bool Flush() {
    if (used_ > 0 && std::fwrite(buffer_.data(), 1, used_, stdout) != used_) failed_ = true;
    used_ = 0;
    return !failed_;
  }

  bool failed() const { return failed_; }

 private:
  static constexpr size_t kCapacity = size_t{1} << 20;
  static constexpr size_t kMaxLine = 512;

  static char* Put(char* p, std::string_view s) {
    std::memcpy(p, s.data(), s.size());
    return p + s.size();
  }
  static char* PutFixed(char* p, u64 value, int width) {
    for (int i = width - 1; i >= 0; --i) {
      p[i] = static_cast<char>('0' + value % 10);
      value /= 10;
    }
    return p + width;
  }
  static char* PutHex8(char* p, std::uint32_t value) {
    static constexpr char kDigits[] = "0123456789abcdef";
    for (int i = 7; i >= 0; --i) {
      p[i] = kDigits[value & 15];
      value >>= 4;
    }
    return p + 8;
  }

  std::vector<char> buffer_;
  size_t used_ = 0;
  bool failed_ = false;
};

// ---------------------------------------------------------------------------------------
// Command line.

struct Options {
  u64 events = 0;
  u64 keys = 0;
  u64 seed = 0;
  double fraud_rate = 0.0002;
  i64 start_ms = 1717200000000;  // 2024-06-01T00:00:00Z
  double zipf = 0;
  i64 max_step_ms = 10;
  bool have_events = false, have_keys = false, have_seed = false;
};

constexpr const char* kUsage =
    "usage: vigil-generate --events N --keys K --seed S [--fraud-rate R] [--start-ms T]\n"
    "                      [--zipf S] [--max-step-ms M]\n"
    "  --events N       lines to write\n"
    "  --keys K         number of cards, 1..1000000000\n"
    "  --seed S         any unsigned 64-bit integer; same arguments, same output\n"
    "  --fraud-rate R   chance per step of starting a fraud instance, 0..1 (default 0.0002)\n"
    "  --start-ms T     first timestamp, epoch milliseconds (default 1717200000000)\n"
    "  --zipf S         draw cards from Zipf(S), S > 0, instead of uniformly\n"
    "  --max-step-ms M  clock step before each ordinary event is uniform in [0, M) (default 10)\n";

template <typename T>
bool ParseInt(const char* text, T& out) {
  const char* end = text + std::strlen(text);
  auto [ptr, ec] = std::from_chars(text, end, out);
  return ec == std::errc() && ptr == end;
}

bool ParseDouble(const char* text, double& out) {
  char* end = nullptr;
  out = std::strtod(text, &end);
  return end != text && *end == '\0' && std::isfinite(out);
}

bool ParseArgs(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "vigil-generate: %s needs a value\n", argv[i]);
      return false;
    }
    const char* value = argv[++i];
    bool ok = false;
    if (flag == "--events") {
      ok = o.have_events = ParseInt(value, o.events);
    } else if (flag == "--keys") {
      ok = o.have_keys = ParseInt(value, o.keys) && o.keys >= 1 && o.keys <= 1000000000;
    } else if (flag == "--seed") {
      ok = o.have_seed = ParseInt(value, o.seed);
    } else if (flag == "--fraud-rate") {
      ok = ParseDouble(value, o.fraud_rate) && o.fraud_rate >= 0 && o.fraud_rate <= 1;
    } else if (flag == "--start-ms") {
      ok = ParseInt(value, o.start_ms) && o.start_ms >= 0 && o.start_ms < (i64{1} << 52);
    } else if (flag == "--zipf") {
      ok = ParseDouble(value, o.zipf) && o.zipf > 0 && o.zipf <= 16;
    } else if (flag == "--max-step-ms") {
      ok = ParseInt(value, o.max_step_ms) && o.max_step_ms >= 1 && o.max_step_ms <= 3600000;
    } else {
      std::fprintf(stderr, "vigil-generate: unknown argument %s\n%s", argv[i - 1], kUsage);
      return false;
    }
    if (!ok) {
      std::fprintf(stderr, "vigil-generate: bad value for %s: %s\n", argv[i - 1], value);
      return false;
    }
  }
  if (!o.have_events || !o.have_keys || !o.have_seed) {
    std::fputs(kUsage, stderr);
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (!ParseArgs(argc, argv, options)) return 2;

  // Both conversions are exact (scaling by a power of two, then truncation or rounding of
  // an exactly represented value), so the thresholds do not depend on the platform.
  const u64 fraud_threshold =
      options.fraud_rate >= 1 ? ~u64{0} : static_cast<u64>(std::ldexp(options.fraud_rate, 64));
  const u64 zipf_q32 =
      options.zipf > 0 ? static_cast<u64>(std::llround(std::ldexp(options.zipf, 32))) : 0;

  const Model model(options.seed, options.keys, zipf_q32);
  Rng rng(options.seed);
  std::priority_queue<Event, std::vector<Event>, LaterFirst> queued;
  Writer writer;

  i64 now = options.start_ms;
  u64 seq = 0;
  u64 written = 0;
  while (written < options.events) {
    now += static_cast<i64>(rng.Below(static_cast<u64>(options.max_step_ms)));
    // Queued fraud events are never earlier than the clock was when they were queued, so
    // draining those due by `now` before the next ordinary event keeps ts non-decreasing.
    while (!queued.empty() && queued.top().ts <= now && written < options.events) {
      writer.Write(queued.top());
      queued.pop();
      ++written;
    }
    if (written >= options.events) break;
    if (fraud_threshold != 0 && rng.Next() < fraud_threshold) {
      InjectFraud(rng, model, now, seq, queued);
      continue;
    }
    Event e = model.Ordinary(rng, model.DrawCard(rng));
    e.ts = now;
    writer.Write(e);
    ++written;
  }
  if (!writer.Flush() || std::fflush(stdout) != 0) {
    std::fprintf(stderr, "vigil-generate: write failed\n");
    return 1;
  }
  return 0;
}
