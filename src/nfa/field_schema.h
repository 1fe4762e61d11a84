#pragma once
// FieldSchema: the set of event fields that anything compiled so far reads, each with a slot.
//
// Patterns are compiled against one schema; the EventParser then extracts exactly those fields,
// once per event, into slots that conditions read by index (no name lookup per event). The
// schema only grows; an event parsed with an older, smaller schema reads Missing for new slots.
// Not thread-safe: build it before events flow.

#include <map>
#include <string>
#include <vector>

namespace vigil::nfa {

class FieldSchema {
 public:
  using Path = std::vector<std::string>;

  // Returns the slot of `path`, adding it if new. REQUIRES: !path.empty().
  int Intern(const Path& path) {
    auto [it, inserted] = index_.emplace(path, static_cast<int>(paths_.size()));
    if (inserted) paths_.push_back(path);
    return it->second;
  }

  int size() const { return static_cast<int>(paths_.size()); }
  const Path& path(int slot) const { return paths_[slot]; }

 private:
  std::vector<Path> paths_;
  std::map<Path, int> index_;
};

// "a.b.c" -> {"a","b","c"}.
inline FieldSchema::Path SplitFieldPath(const std::string& dotted) {
  FieldSchema::Path path;
  size_t start = 0;
  while (true) {
    size_t dot = dotted.find('.', start);
    path.push_back(dotted.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return path;
}

}  // namespace vigil::nfa
