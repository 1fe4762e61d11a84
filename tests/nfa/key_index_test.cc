// KeyIndex against a std::unordered_map under random inserts, lookups and erases, including
// keys that share a hash (collisions in one probe run exercise the backward-shift erase).
#include "nfa/key_index.h"

#include <doctest/doctest.h>

#include <random>
#include <string>
#include <unordered_map>
#include <vector>

TEST_SUITE_BEGIN("nfa");

namespace {

using vigil::nfa::KeyIndex;

struct Model {
  std::vector<std::string> keys;  // by record; empty: free
  KeyIndex index;
  std::unordered_map<std::string, uint32_t> truth;

  // Half of the keys get a hash that shares its low bits with others, to force long probes.
  static uint64_t HashOf(const std::string& key, bool collide) {
    const uint64_t h = KeyIndex::Hash(key);
    return collide ? (h & ~uint64_t{0xffff}) | 7 : h;
  }

  uint32_t Find(const std::string& key, bool collide) const {
    return index.Find(HashOf(key, collide), key,
                      [this](uint32_t r) { return std::string_view(keys[r]); });
  }
};

}  // namespace

TEST_CASE("KeyIndex: agrees with a hash map under random inserts and erases") {
  for (bool collide : {false, true}) {
    CAPTURE(collide);
    Model m;
    std::mt19937_64 rng(42);
    for (int step = 0; step < 20000; ++step) {
      const std::string key = "k" + std::to_string(rng() % 600);
      const uint32_t found = m.Find(key, collide);
      auto it = m.truth.find(key);
      REQUIRE((found == KeyIndex::kNone) == (it == m.truth.end()));
      if (it != m.truth.end()) REQUIRE(found == it->second);
      if (it == m.truth.end()) {
        const uint32_t record = static_cast<uint32_t>(m.keys.size());
        m.keys.push_back(key);
        m.index.Insert(Model::HashOf(key, collide), record);
        m.truth[key] = record;
      } else if (rng() % 2 == 0) {
        m.index.Erase(Model::HashOf(key, collide), it->second);
        m.keys[it->second].clear();
        m.truth.erase(it);
      }
      REQUIRE(m.index.size() == m.truth.size());
    }
    for (const auto& [key, record] : m.truth) CHECK(m.Find(key, collide) == record);
  }
}

TEST_SUITE_END();
