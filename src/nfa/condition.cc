#include "nfa/condition.h"

#include <re2/re2.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nfa/value.h"

namespace vigil::nfa {
namespace {

using Kind = Value::Kind;

// Parser recursion limit (parentheses, lists, arguments, unary chains) and evaluation tree
// depth limit. Both keep a hostile or generated expression from overflowing the stack, in
// the compiler and in the per-event evaluator (which recurses over the tree).
constexpr int kMaxNesting = 100;
constexpr int kMaxTreeDepth = 1000;

// Up to this many literal elements of one kind, `in` scans them; beyond, it binary-searches
// numbers and hashes strings.
constexpr size_t kInSetLinearMax = 8;

// A bump allocator over chunks that never move, so a view handed out earlier in an
// evaluation stays valid while later allocations grow the arena. Reset() keeps the chunks:
// after the first few events, evaluation allocates nothing.
template <typename T>
class Arena {
 public:
  T* Alloc(size_t n) {
    if (n == 0) return nullptr;
    while (current_ < blocks_.size()) {
      Block& b = blocks_[current_];
      if (b.capacity - used_ >= n) {
        T* p = b.data.get() + used_;
        used_ += n;
        return p;
      }
      // Too small for this request; it is used again from the next Reset().
      ++current_;
      used_ = 0;
    }
    const size_t capacity =
        std::max(n, blocks_.empty() ? kFirstBlock : blocks_.back().capacity * 2);
    blocks_.push_back(Block{std::unique_ptr<T[]>(new T[capacity]), capacity});
    current_ = blocks_.size() - 1;
    used_ = n;
    return blocks_.back().data.get();
  }

  void Reset() {
    current_ = 0;
    used_ = 0;
  }

 private:
  static constexpr size_t kFirstBlock = 256;
  struct Block {
    std::unique_ptr<T[]> data;
    size_t capacity;
  };
  std::vector<Block> blocks_;
  size_t current_ = 0;
  size_t used_ = 0;
};

// The instruction set. A program is a tree of Nodes stored in one vector; children always
// have smaller indexes than their parent. `a` and `b` are operands whose meaning each op
// states. Field slots are path indexes until the compiler interns them at the end.
enum class Op : uint8_t {
  kConst,          // a: index into constants
  kField,          // a: slot of the current event
  kSelf,           // the current event (`event`)
  kStageList,      // a: stage; the stage's events as a list
  kStageCount,     // a: stage; how many events it took
  kStageEvent,     // a: stage, b: index node
  kStageEventAt,   // a: stage, b: constant index (negative counts from the end)
  kStageProject,   // a: stage, b: slot; the field over the stage's events, missing skipped
  kEventField,     // a: node yielding an event, b: slot
  kHasField,       // a: slot of the current event
  kHasEventField,  // a: node yielding an event, b: slot
  kMakeList,       // a: first index into Program::items, b: element count
  kNot,            // a
  kNeg,            // a
  kAnd,            // a, b
  kOr,             // a, b
  kEq,             // a, b (kEq..kGe stay contiguous)
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
  kCmpFieldConst,  // a: slot of the current event, b: constant index, cmp: kEq..kGe
  kIn,             // a: needle, b: list node
  kInSet,          // a: needle, b: index into Program::sets
  kAdd,            // a, b
  kSub,
  kMul,
  kDiv,
  kMod,
  kIndex,          // a: list, b: index
  kCount,          // a: list
  kSum,
  kAvg,
  kMin,
  kMax,
  kAbs,            // a
  kSize,           // a
  kStartsWith,     // a: receiver, b: argument
  kEndsWith,
  kContains,
  kMatches,        // a: receiver, b: index into Program::regexes
  kLower,          // a: receiver
  kUpper,
};

struct Node {
  Node(Op op, int32_t a, int32_t b, Op cmp = Op::kConst) : op(op), cmp(cmp), a(a), b(b) {}
  Op op;
  Op cmp;  // the comparison of kCmpFieldConst
  int32_t a;
  int32_t b;
};

// String equality without a memcmp call for the short strings conditions mostly compare
// (codes, countries, types).
[[gnu::always_inline]] inline bool StrEq(std::string_view x, std::string_view y) {
  if (x.size() != y.size()) return false;
  if (x.size() > 16) return std::memcmp(x.data(), y.data(), x.size()) == 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] != y[i]) return false;
  }
  return true;
}

// Membership table for a literal list of scalars: `x in ['NL', 'BE']` looks only at the
// elements of x's kind, with no Value comparisons. Short lists are scanned; longer ones use
// binary search (numbers) or an open-addressing hash table (strings).
class InSet {
 public:
  void Add(const Value& v) {
    switch (v.kind) {
      case Kind::kNumber: numbers_.push_back(v.number); break;
      case Kind::kString: strings_.push_back(v.string()); break;
      case Kind::kNull: has_null_ = true; break;
      default: (v.boolean ? has_true_ : has_false_) = true; break;
    }
  }

  // Call once after the last Add().
  void Build() {
    std::sort(numbers_.begin(), numbers_.end());
    numbers_.erase(std::unique(numbers_.begin(), numbers_.end()), numbers_.end());
    std::sort(strings_.begin(), strings_.end());
    strings_.erase(std::unique(strings_.begin(), strings_.end()), strings_.end());
    if (strings_.size() <= kInSetLinearMax) return;
    size_t capacity = 16;
    while (capacity < 2 * strings_.size()) capacity *= 2;  // load factor <= 1/2
    slots_.assign(capacity, 0);
    for (size_t i = 0; i < strings_.size(); ++i) {
      size_t slot = Hash(strings_[i]) & (capacity - 1);
      while (slots_[slot] != 0) slot = (slot + 1) & (capacity - 1);
      slots_[slot] = static_cast<uint32_t>(i + 1);
    }
  }

  // The members, when all are strings; nullptr otherwise.
  const std::vector<std::string_view>* OnlyStrings() const {
    const bool only = numbers_.empty() && !has_null_ && !has_true_ && !has_false_;
    return only ? &strings_ : nullptr;
  }

  bool Contains(const Value& v) const {
    switch (v.kind) {
      case Kind::kNumber:
        return ContainsNumber(v.number);
      case Kind::kString:
        return ContainsString(v.string());
      case Kind::kNull:
        return has_null_;
      case Kind::kBool:
        return v.boolean ? has_true_ : has_false_;
      default:
        return false;
    }
  }

 private:
  // FNV-1a: inline and cheap for the short strings (codes, countries) typical here.
  static uint64_t Hash(std::string_view s) {
    uint64_t h = 14695981039346656037ull;
    for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    return h;
  }

  bool ContainsNumber(double x) const {
    if (numbers_.size() <= kInSetLinearMax) {
      for (double y : numbers_) {
        if (y == x) return true;
      }
      return false;
    }
    return std::binary_search(numbers_.begin(), numbers_.end(), x);
  }

  bool ContainsString(std::string_view x) const {
    if (slots_.empty()) {
      for (std::string_view y : strings_) {
        if (StrEq(x, y)) return true;
      }
      return false;
    }
    const size_t mask = slots_.size() - 1;
    for (size_t slot = Hash(x) & mask;; slot = (slot + 1) & mask) {
      const uint32_t entry = slots_[slot];
      if (entry == 0) return false;
      if (StrEq(strings_[entry - 1], x)) return true;
    }
  }

  std::vector<double> numbers_;            // sorted, unique
  std::vector<std::string_view> strings_;  // unique; views into Program::strings
  std::vector<uint32_t> slots_;            // hash table of strings_ index + 1; 0 is empty
  bool has_null_ = false;
  bool has_true_ = false;
  bool has_false_ = false;
};

}  // namespace

// Everything a compiled condition needs, immutable after Compile(). Values in `constants`
// point into `strings` and `lists`, which are deques so that adding to them while compiling
// never moves what earlier values point at.
struct Condition::Program {
  std::string text;
  std::vector<Node> nodes;
  std::vector<Value> constants;
  std::vector<int32_t> items;  // element nodes of kMakeList
  std::vector<InSet> sets;
  std::vector<std::unique_ptr<RE2>> regexes;
  std::deque<std::string> strings;
  std::deque<std::vector<Value>> lists;
  int32_t root = -1;
  bool reads_stages = false;
  std::vector<RequiredStrings> required;  // see required_strings()
};

struct EvalScratch::Impl {
  Arena<char> chars;    // lower(), upper(), string concatenation
  Arena<Value> values;  // projections, lists built from non-constant elements

  void Reset() {
    chars.Reset();
    values.Reset();
  }
};

EvalScratch::EvalScratch() : impl_(std::make_unique<Impl>()) {}
EvalScratch::~EvalScratch() = default;

namespace {

enum class Tri : uint8_t { kFalse, kTrue, kUnknown };

Tri Equal(const Value& a, const Value& b);

bool ListEqual(const Value& a, const Value& b) {
  if (a.list.size != b.list.size) return false;
  for (size_t i = 0; i < a.list.size; ++i) {
    // Inside a list, elements of different types are simply unequal.
    if (Equal(a.list.data[i], b.list.data[i]) != Tri::kTrue) return false;
  }
  return true;
}

// Value equality. Values of different types (or missing, or opaque objects and events) have
// no answer: the contract makes such a comparison "no value", not false.
Tri Equal(const Value& a, const Value& b) {
  if (a.kind != b.kind) return Tri::kUnknown;
  bool eq;
  switch (a.kind) {
    case Kind::kNull:
      eq = true;
      break;
    case Kind::kBool:
      eq = a.boolean == b.boolean;
      break;
    case Kind::kNumber:
      eq = a.number == b.number;
      break;
    case Kind::kString:
      eq = StrEq(a.string(), b.string());
      break;
    case Kind::kList:
      eq = ListEqual(a, b);
      break;
    default:
      return Tri::kUnknown;
  }
  return eq ? Tri::kTrue : Tri::kFalse;
}

Tri ToTri(bool b) { return b ? Tri::kTrue : Tri::kFalse; }
Tri ToTri(const Value& v) { return v.kind != Kind::kBool ? Tri::kUnknown : ToTri(v.boolean); }
Value FromTri(Tri t) { return t == Tri::kUnknown ? Value::Missing() : Value::Bool(t == Tri::kTrue); }

inline Tri Compare(Op op, const Value& l, const Value& r) {
  if (l.kind == Kind::kNumber && r.kind == Kind::kNumber) {
    const double x = l.number;
    const double y = r.number;
    switch (op) {
      case Op::kEq: return ToTri(x == y);
      case Op::kNe: return ToTri(x != y);
      case Op::kLt: return ToTri(x < y);
      case Op::kLe: return ToTri(x <= y);
      case Op::kGt: return ToTri(x > y);
      default: return ToTri(x >= y);
    }
  }
  if (l.kind == Kind::kString && r.kind == Kind::kString) {
    // string_view compares as unsigned bytes, which for UTF-8 is code point order.
    const std::string_view x = l.string();
    const std::string_view y = r.string();
    switch (op) {
      case Op::kEq: return ToTri(StrEq(x, y));
      case Op::kNe: return ToTri(!StrEq(x, y));
      case Op::kLt: return ToTri(x < y);
      case Op::kLe: return ToTri(x <= y);
      case Op::kGt: return ToTri(x > y);
      default: return ToTri(x >= y);
    }
  }
  if (op == Op::kEq || op == Op::kNe) {
    const Tri t = Equal(l, r);
    if (t == Tri::kUnknown) return Tri::kUnknown;
    return ToTri((t == Tri::kTrue) == (op == Op::kEq));
  }
  return Tri::kUnknown;  // ordering is defined for numbers and strings only
}

// `c OP x` is `x Mirror(OP) c`, so a fused comparison always has the field on the left.
Op Mirror(Op op) {
  switch (op) {
    case Op::kLt: return Op::kGt;
    case Op::kLe: return Op::kGe;
    case Op::kGt: return Op::kLt;
    case Op::kGe: return Op::kLe;
    default: return op;
  }
}

// Resolves a list index: an integral number, negative counting from the end.
bool ResolveIndex(const Value& index, size_t size, size_t* out) {
  if (index.kind != Kind::kNumber) return false;
  double d = index.number;
  if (d != std::trunc(d)) return false;  // also rejects NaN; infinities fail the range check
  if (d < 0) d += static_cast<double>(size);
  if (d < 0 || d >= static_cast<double>(size)) return false;
  *out = static_cast<size_t>(d);
  return true;
}

size_t CodePoints(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

// Simple case mapping of the two-byte UTF-8 range (Latin-1, Latin Extended-A, Greek,
// Cyrillic). Only mappings that keep the encoded length are applied, so the result has
// exactly the input's size; anything else (ß, ı, scripts beyond U+07FF) is left as is.
uint32_t MapCodePoint(uint32_t cp, bool upper) {
  auto in = [cp](uint32_t lo, uint32_t hi) { return cp >= lo && cp <= hi; };
  if (upper) {
    if (in(0xE0, 0xFE) && cp != 0xF7) return cp - 0x20;
    if (cp == 0xFF) return 0x178;
    if ((in(0x100, 0x12F) || in(0x132, 0x137) || in(0x14A, 0x177)) && (cp & 1)) return cp - 1;
    if ((in(0x139, 0x148) || in(0x179, 0x17E)) && !(cp & 1)) return cp - 1;
    if (cp == 0x3C2) return 0x3A3;  // final sigma
    if (in(0x3B1, 0x3C9)) return cp - 0x20;
    if (in(0x430, 0x44F)) return cp - 0x20;
    if (in(0x450, 0x45F)) return cp - 0x50;
  } else {
    if (in(0xC0, 0xDE) && cp != 0xD7) return cp + 0x20;
    if (cp == 0x178) return 0xFF;
    if ((in(0x100, 0x12F) || in(0x132, 0x137) || in(0x14A, 0x177)) && !(cp & 1)) return cp + 1;
    if ((in(0x139, 0x148) || in(0x179, 0x17E)) && (cp & 1)) return cp + 1;
    if (in(0x391, 0x3A9) && cp != 0x3A2) return cp + 0x20;
    if (in(0x410, 0x42F)) return cp + 0x20;
    if (in(0x400, 0x40F)) return cp + 0x50;
  }
  return cp;
}

void MapCase(std::string_view s, char* out, bool upper) {
  const size_t n = s.size();
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (upper && c >= 'a' && c <= 'z') {
        out[i] = static_cast<char>(c - 32);
      } else if (!upper && c >= 'A' && c <= 'Z') {
        out[i] = static_cast<char>(c + 32);
      } else {
        out[i] = static_cast<char>(c);
      }
      continue;
    }
    const auto c2 = i + 1 < n ? static_cast<unsigned char>(s[i + 1]) : 0;
    if (c >= 0xC2 && c <= 0xDF && (c2 & 0xC0) == 0x80) {
      const uint32_t cp = MapCodePoint(((c & 0x1Fu) << 6) | (c2 & 0x3Fu), upper);
      out[i] = static_cast<char>(0xC0 | (cp >> 6));
      out[i + 1] = static_cast<char>(0x80 | (cp & 0x3F));
      ++i;
      continue;
    }
    out[i] = static_cast<char>(c);
  }
}

// Evaluates a program's nodes for one event; constructed per Matches() call.
//
// Two entry points share the tree: Test() for nodes in a boolean position (the root, the
// operands of && || !) returns a one-byte Tri in a register, and Eval() returns a Value.
// Boolean ops live only in Test()/TestRare() and value ops only in Eval()/EvalRare() (Test()
// also reads a bare field itself); each falls back to the other, so both accept any node.
// Heavier ops sit out of line in the *Rare() functions, which keeps the frames of the
// recursive hot functions small.
class Evaluator {
 public:
  Evaluator(const Condition::Program& program, const Event& event, const MatchView* match,
            EvalScratch::Impl* scratch)
      : p_(program), event_(event), match_(match), scratch_(scratch) {}

  // The value of node `idx`; fields and constants, the commonest operands, are read in place
  // without a call. `tmp` holds any other result.
  [[gnu::always_inline]] const Value& Leaf(int32_t idx, Value* tmp) const {
    const Node& n = p_.nodes[idx];
    if (n.op == Op::kField) return event_.field(n.a);
    if (n.op == Op::kConst) return p_.constants[n.a];
    *tmp = Eval(idx);
    return *tmp;
  }

  // Test() with the commonest leaf, `field OP literal`, handled without a call.
  [[gnu::always_inline]] Tri TestNode(int32_t idx) const {
    const Node& n = p_.nodes[idx];
    if (n.op == Op::kCmpFieldConst) return Compare(n.cmp, event_.field(n.a), p_.constants[n.b]);
    return Test(idx);
  }

  Tri Test(int32_t idx) const {
    const Node& n = p_.nodes[idx];
    switch (n.op) {
      case Op::kCmpFieldConst:
        return Compare(n.cmp, event_.field(n.a), p_.constants[n.b]);
      case Op::kAnd: {
        // CEL: false wins over no value on either side, so `x && false` is false too.
        const Tri l = TestNode(n.a);
        if (l == Tri::kFalse) return Tri::kFalse;
        const Tri r = TestNode(n.b);
        if (r == Tri::kFalse) return Tri::kFalse;
        return l == Tri::kTrue && r == Tri::kTrue ? Tri::kTrue : Tri::kUnknown;
      }
      case Op::kOr: {
        const Tri l = TestNode(n.a);
        if (l == Tri::kTrue) return Tri::kTrue;
        const Tri r = TestNode(n.b);
        if (r == Tri::kTrue) return Tri::kTrue;
        return l == Tri::kFalse && r == Tri::kFalse ? Tri::kFalse : Tri::kUnknown;
      }
      case Op::kNot: {
        const Tri t = TestNode(n.a);
        if (t == Tri::kUnknown) return t;
        return t == Tri::kTrue ? Tri::kFalse : Tri::kTrue;
      }
      case Op::kEq:
      case Op::kNe:
      case Op::kLt:
      case Op::kLe:
      case Op::kGt:
      case Op::kGe: {
        Value l;
        Value r;
        return Compare(n.op, Leaf(n.a, &l), Leaf(n.b, &r));
      }
      case Op::kInSet: {
        Value tmp;
        const Value& needle = Leaf(n.a, &tmp);
        if (needle.is_missing()) return Tri::kUnknown;
        return ToTri(p_.sets[n.b].Contains(needle));
      }
      case Op::kHasField:
        return ToTri(!event_.field(n.a).is_missing());
      case Op::kField:  // a bare boolean field, e.g. `flagged && amount > 5`
        return ToTri(event_.field(n.a));
      case Op::kIn:
      case Op::kHasEventField:
      case Op::kStartsWith:
      case Op::kEndsWith:
      case Op::kContains:
      case Op::kMatches:
        return TestRare(n);
      default:
        return ToTri(Eval(idx));
    }
  }

  Value Eval(int32_t idx) const {
    const Node& n = p_.nodes[idx];
    switch (n.op) {
      case Op::kConst:
        return p_.constants[n.a];
      case Op::kField:
        return event_.field(n.a);
      case Op::kSelf:
        return Value::OfEvent(&event_);
      case Op::kStageCount:
        return Value::Number(static_cast<double>(Stage(n.a).size()));
      case Op::kStageEvent: {
        const auto events = Stage(n.a);
        size_t i;
        if (!ResolveIndex(Eval(n.b), events.size(), &i)) return Value::Missing();
        return Value::OfEvent(events[i]);
      }
      case Op::kStageEventAt: {
        const auto events = Stage(n.a);
        const auto size = static_cast<int64_t>(events.size());
        const int64_t i = n.b < 0 ? size + n.b : n.b;
        if (i < 0 || i >= size) return Value::Missing();
        return Value::OfEvent(events[i]);
      }
      case Op::kEventField: {
        const Value e = Eval(n.a);
        if (e.kind != Kind::kEvent) return Value::Missing();
        return e.event->field(n.b);
      }
      case Op::kNeg: {
        const Value v = Eval(n.a);
        if (v.kind != Kind::kNumber) return Value::Missing();
        return Value::Number(-v.number);
      }
      case Op::kAdd:
      case Op::kSub:
      case Op::kMul:
      case Op::kDiv:
      case Op::kMod: {
        Value l_tmp;
        Value r_tmp;
        const Value& l = Leaf(n.a, &l_tmp);
        const Value& r = Leaf(n.b, &r_tmp);
        if (l.kind != Kind::kNumber || r.kind != Kind::kNumber) {
          if (n.op == Op::kAdd) return Concat(l, r);
          return Value::Missing();
        }
        switch (n.op) {
          case Op::kAdd:
            return Value::Number(l.number + r.number);
          case Op::kSub:
            return Value::Number(l.number - r.number);
          case Op::kMul:
            return Value::Number(l.number * r.number);
          case Op::kDiv:
            if (r.number == 0) return Value::Missing();
            return Value::Number(l.number / r.number);
          default:
            if (r.number == 0) return Value::Missing();
            return Value::Number(std::fmod(l.number, r.number));
        }
      }
      case Op::kIndex: {
        const Value l = Eval(n.a);
        const Value i = Eval(n.b);
        size_t k;
        if (l.kind != Kind::kList || !ResolveIndex(i, l.list.size, &k)) return Value::Missing();
        return l.list.data[k];
      }
      case Op::kAbs: {
        const Value v = Eval(n.a);
        if (v.kind != Kind::kNumber) return Value::Missing();
        return Value::Number(std::fabs(v.number));
      }
      case Op::kCmpFieldConst:
      case Op::kAnd:
      case Op::kOr:
      case Op::kNot:
      case Op::kEq:
      case Op::kNe:
      case Op::kLt:
      case Op::kLe:
      case Op::kGt:
      case Op::kGe:
      case Op::kInSet:
      case Op::kIn:
      case Op::kHasField:
      case Op::kHasEventField:
      case Op::kStartsWith:
      case Op::kEndsWith:
      case Op::kContains:
      case Op::kMatches:
        return FromTri(Test(idx));
      default:
        return EvalRare(n);
    }
  }

 private:
  [[gnu::noinline]] Tri TestRare(const Node& n) const {
    switch (n.op) {
      case Op::kIn: {
        Value tmp;
        const Value& needle = Leaf(n.a, &tmp);
        if (needle.is_missing()) return Tri::kUnknown;
        bool found = false;
        const bool is_list = Visit(n.b, [&](const Value& v) {
          found = Equal(needle, v) == Tri::kTrue;
          return !found;
        });
        return is_list ? ToTri(found) : Tri::kUnknown;
      }
      case Op::kHasEventField: {
        const Value e = Eval(n.a);
        return ToTri(e.kind == Kind::kEvent && !e.event->field(n.b).is_missing());
      }
      case Op::kStartsWith:
      case Op::kEndsWith:
      case Op::kContains: {
        Value s_tmp;
        Value x_tmp;
        const Value& s = Leaf(n.a, &s_tmp);
        const Value& x = Leaf(n.b, &x_tmp);
        if (s.kind != Kind::kString || x.kind != Kind::kString) return Tri::kUnknown;
        const std::string_view hay = s.string();
        const std::string_view needle = x.string();
        if (needle.size() > hay.size()) return Tri::kFalse;
        if (n.op == Op::kStartsWith) return ToTri(StrEq(hay.substr(0, needle.size()), needle));
        if (n.op == Op::kEndsWith) {
          return ToTri(StrEq(hay.substr(hay.size() - needle.size()), needle));
        }
        return ToTri(hay.find(needle) != std::string_view::npos);
      }
      case Op::kMatches: {
        Value tmp;
        const Value& s = Leaf(n.a, &tmp);
        if (s.kind != Kind::kString) return Tri::kUnknown;
        // Match() with no submatches is RE2::PartialMatch without the argument plumbing;
        // RE2 runs its DFA, linear in the input whatever the pattern.
        const re2::StringPiece text(s.str.data, s.str.size);
        return ToTri(
            p_.regexes[n.b]->Match(text, 0, text.size(), RE2::UNANCHORED, nullptr, 0));
      }
      default:
        return Tri::kUnknown;  // Test() sends only the ops above
    }
  }

  [[gnu::noinline]] Value EvalRare(const Node& n) const {
    switch (n.op) {
      case Op::kStageList: {
        const auto events = Stage(n.a);
        Value* out = scratch_->values.Alloc(events.size());
        for (size_t i = 0; i < events.size(); ++i) out[i] = Value::OfEvent(events[i]);
        return Value::List(out, events.size());
      }
      case Op::kStageProject: {
        const auto events = Stage(n.a);
        Value* out = scratch_->values.Alloc(events.size());
        size_t k = 0;
        for (const Event* e : events) {
          const Value& v = e->field(n.b);
          if (!v.is_missing()) out[k++] = v;
        }
        return Value::List(out, k);
      }
      case Op::kMakeList: {
        // Allocated before the elements are evaluated, so their own allocations follow it.
        Value* out = scratch_->values.Alloc(n.b);
        for (int32_t i = 0; i < n.b; ++i) out[i] = Eval(p_.items[n.a + i]);
        return Value::List(out, n.b);
      }
      case Op::kCount: {
        size_t count = 0;
        const bool is_list = Visit(n.a, [&](const Value&) {
          ++count;
          return true;
        });
        if (!is_list) return Value::Missing();
        return Value::Number(static_cast<double>(count));
      }
      case Op::kSum:
      case Op::kAvg:
      case Op::kMin:
      case Op::kMax:
        return Aggregate(n.op, n.a);
      case Op::kSize: {
        const Value v = Eval(n.a);
        if (v.kind == Kind::kString) {
          return Value::Number(static_cast<double>(CodePoints(v.string())));
        }
        if (v.kind == Kind::kList) return Value::Number(static_cast<double>(v.list.size));
        return Value::Missing();
      }
      case Op::kLower:
      case Op::kUpper: {
        const Value s = Eval(n.a);
        if (s.kind != Kind::kString) return Value::Missing();
        char* out = scratch_->chars.Alloc(s.str.size);
        MapCase(s.string(), out, n.op == Op::kUpper);
        return Value::String({out, s.str.size});
      }
      default:
        return Value::Missing();  // every op is handled by Test(), Eval() or here
    }
  }

  [[gnu::noinline]] Value Concat(const Value& l, const Value& r) const {
    if (l.kind != Kind::kString || r.kind != Kind::kString) return Value::Missing();
    char* out = scratch_->chars.Alloc(l.str.size + r.str.size);
    if (l.str.size) std::memcpy(out, l.str.data, l.str.size);
    if (r.str.size) std::memcpy(out + l.str.size, r.str.data, r.str.size);
    return Value::String({out, l.str.size + r.str.size});
  }

  std::span<const Event* const> Stage(int32_t stage) const {
    // Defensive: a caller that passes no MatchView sees every stage as empty.
    if (!match_) return {};
    return match_->StageEvents(stage);
  }

  // Calls f(element) for each element of the list node `idx` until f returns false.
  // Projections and `$stage` are walked in place rather than built in the scratch, so
  // aggregates and `in` over them allocate nothing. Returns false when `idx` is no list.
  template <typename F>
  bool Visit(int32_t idx, F&& f) const {
    const Node& n = p_.nodes[idx];
    if (n.op == Op::kStageProject) {
      for (const Event* e : Stage(n.a)) {
        const Value& v = e->field(n.b);
        if (!v.is_missing() && !f(v)) break;
      }
      return true;
    }
    if (n.op == Op::kStageList) {
      for (const Event* e : Stage(n.a)) {
        if (!f(Value::OfEvent(e))) break;
      }
      return true;
    }
    const Value list = Eval(idx);
    if (list.kind != Kind::kList) return false;
    for (size_t i = 0; i < list.list.size; ++i) {
      if (!f(list.list.data[i])) break;
    }
    return true;
  }

  Value Aggregate(Op op, int32_t list) const {
    double sum = 0;
    double lo = 0;
    double hi = 0;
    size_t count = 0;
    bool numbers = true;
    const bool is_list = Visit(list, [&](const Value& v) {
      if (v.kind != Kind::kNumber) return numbers = false;
      sum += v.number;
      lo = count == 0 ? v.number : std::min(lo, v.number);
      hi = count == 0 ? v.number : std::max(hi, v.number);
      ++count;
      return true;
    });
    if (!is_list || !numbers) return Value::Missing();
    switch (op) {
      case Op::kSum:
        return Value::Number(sum);
      case Op::kAvg:
        return count ? Value::Number(sum / static_cast<double>(count)) : Value::Missing();
      case Op::kMin:
        return count ? Value::Number(lo) : Value::Missing();
      default:
        return count ? Value::Number(hi) : Value::Missing();
    }
  }

  const Condition::Program& p_;
  const Event& event_;
  const MatchView* match_;
  EvalScratch::Impl* scratch_;
};

// ---- Compiler ----------------------------------------------------------------------------

enum class Tok : uint8_t {
  kEnd,
  kNumber,
  kString,
  kIdent,
  kStage,
  kLParen,
  kRParen,
  kLBracket,
  kRBracket,
  kDot,
  kComma,
  kNot,
  kAnd,
  kOr,
  kEq,
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
  kPlus,
  kMinus,
  kStar,
  kSlash,
  kPercent,
};

struct Token {
  Tok kind = Tok::kEnd;
  size_t offset = 0;
  size_t length = 0;
  std::string text;  // identifier, stage name, or unescaped string literal
  double number = 0;
};

// A parsed operand: either a finished node, or a field path that has not been turned into a
// node yet because what follows may extend it (`a` then `.b`, `$s` then `[0]`, `event` then
// `['x']`) or a function may want it unevaluated (`has(a.b)`, `count($s)`).
struct Operand {
  enum class Base : uint8_t { kNone, kCurrentEvent, kEventNode, kStage };
  int32_t node = -1;
  Base base = Base::kNone;
  int32_t base_arg = 0;  // kEventNode: the node yielding the event; kStage: the stage index
  FieldSchema::Path path;
  size_t offset = 0;  // of the operand's first token, for errors about it

  static Operand Of(int32_t node, size_t offset) {
    Operand o;
    o.node = node;
    o.offset = offset;
    return o;
  }
  bool is_path() const { return base != Base::kNone; }
};

struct FunctionInfo {
  std::string_view name;
  Op op;
};
constexpr FunctionInfo kFunctions[] = {
    {"count", Op::kCount}, {"sum", Op::kSum}, {"avg", Op::kAvg},    {"min", Op::kMin},
    {"max", Op::kMax},     {"has", Op::kHasField}, {"abs", Op::kAbs}, {"size", Op::kSize},
};

struct MethodInfo {
  std::string_view name;
  Op op;
  size_t arity;
};
constexpr MethodInfo kMethods[] = {
    {"startsWith", Op::kStartsWith, 1}, {"endsWith", Op::kEndsWith, 1},
    {"contains", Op::kContains, 1},     {"matches", Op::kMatches, 1},
    {"lower", Op::kLower, 0},           {"upper", Op::kUpper, 0},
};

const FunctionInfo* FindFunction(std::string_view name) {
  for (const FunctionInfo& f : kFunctions) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

const MethodInfo* FindMethod(std::string_view name) {
  for (const MethodInfo& m : kMethods) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

bool IsIdentStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool IsIdentChar(char c) { return IsIdentStart(c) || (c >= '0' && c <= '9'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Ops whose result depends only on their operands: with constant operands they are
// evaluated once at compile time.
bool IsPure(Op op) {
  switch (op) {
    case Op::kConst:
    case Op::kField:
    case Op::kSelf:
    case Op::kStageList:
    case Op::kStageCount:
    case Op::kStageEvent:
    case Op::kStageEventAt:
    case Op::kStageProject:
    case Op::kEventField:
    case Op::kHasField:
    case Op::kHasEventField:
    case Op::kMakeList:
    case Op::kCmpFieldConst:
      return false;
    default:
      return true;
  }
}

bool IsScalar(const Value& v) {
  return v.kind == Kind::kNull || v.kind == Kind::kBool || v.kind == Kind::kNumber ||
         v.kind == Kind::kString;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Recursive-descent parser with CEL's precedence, emitting nodes bottom-up into a Program.
// Errors stop the parse: each function returns false after recording the first error.
class Compiler {
 public:
  Compiler(std::string_view text, const Condition::StageResolver& stages,
           Condition::Program* program)
      : text_(text), stages_(stages), program_(program) {}

  std::optional<ConditionError> Run(FieldSchema* schema) {
    if (!Lex()) return error_;
    Operand root;
    if (!ParseOr(&root)) return error_;
    if (Peek().kind != Tok::kEnd) {
      Fail(Peek().offset, "unexpected " + Describe(Peek()));
      return error_;
    }
    program_->root = Finalize(root);
    if (max_depth_ > kMaxTreeDepth) {
      Fail(0, "expression is nested too deeply");
      return error_;
    }
    // Paths are interned only now, so a condition that fails to compile leaves the schema
    // (and with it the work the event parser does) untouched.
    std::vector<int32_t> slots;
    slots.reserve(paths_.size());
    for (const FieldSchema::Path& path : paths_) slots.push_back(schema->Intern(path));
    for (Node& n : program_->nodes) {
      switch (n.op) {
        case Op::kField:
        case Op::kHasField:
        case Op::kCmpFieldConst:
          n.a = slots[n.a];
          break;
        case Op::kStageProject:
        case Op::kEventField:
        case Op::kHasEventField:
          n.b = slots[n.b];
          break;
        default:
          break;
      }
    }
    return std::nullopt;
  }

 private:
  bool Fail(size_t offset, std::string message) {
    if (!error_) error_ = ConditionError{offset, std::move(message)};
    return false;
  }

  // ---- Lexer

  bool Lex() {
    size_t i = 0;
    const size_t n = text_.size();
    while (true) {
      while (i < n && (text_[i] == ' ' || text_[i] == '\t' || text_[i] == '\n' ||
                       text_[i] == '\r')) {
        ++i;
      }
      Token t;
      t.offset = i;
      if (i == n) {
        tokens_.push_back(std::move(t));
        return true;
      }
      const char c = text_[i];
      auto two = [&](char next) { return i + 1 < n && text_[i + 1] == next; };
      auto simple = [&](Tok kind, size_t len) {
        t.kind = kind;
        t.length = len;
        i += len;
      };
      if (IsDigit(c)) {
        if (!LexNumber(&i, &t)) return false;
      } else if (c == '\'' || c == '"') {
        if (!LexString(&i, &t)) return false;
      } else if (IsIdentStart(c)) {
        size_t end = i;
        while (end < n && IsIdentChar(text_[end])) ++end;
        t.kind = Tok::kIdent;
        t.text.assign(text_.substr(i, end - i));
        t.length = end - i;
        i = end;
      } else if (c == '$') {
        size_t end = i + 1;
        if (end == n || !IsIdentStart(text_[end])) {
          return Fail(i, "expected a stage name after '$'");
        }
        while (end < n && IsIdentChar(text_[end])) ++end;
        t.kind = Tok::kStage;
        t.text.assign(text_.substr(i + 1, end - i - 1));
        t.length = end - i;
        i = end;
      } else {
        switch (c) {
          case '(': simple(Tok::kLParen, 1); break;
          case ')': simple(Tok::kRParen, 1); break;
          case '[': simple(Tok::kLBracket, 1); break;
          case ']': simple(Tok::kRBracket, 1); break;
          case '.': simple(Tok::kDot, 1); break;
          case ',': simple(Tok::kComma, 1); break;
          case '+': simple(Tok::kPlus, 1); break;
          case '-': simple(Tok::kMinus, 1); break;
          case '*': simple(Tok::kStar, 1); break;
          case '/': simple(Tok::kSlash, 1); break;
          case '%': simple(Tok::kPercent, 1); break;
          case '!': two('=') ? simple(Tok::kNe, 2) : simple(Tok::kNot, 1); break;
          case '<': two('=') ? simple(Tok::kLe, 2) : simple(Tok::kLt, 1); break;
          case '>': two('=') ? simple(Tok::kGe, 2) : simple(Tok::kGt, 1); break;
          case '=':
            if (!two('=')) return Fail(i, "unexpected '=' (did you mean '=='?)");
            simple(Tok::kEq, 2);
            break;
          case '&':
            if (!two('&')) return Fail(i, "unexpected '&' (did you mean '&&'?)");
            simple(Tok::kAnd, 2);
            break;
          case '|':
            if (!two('|')) return Fail(i, "unexpected '|' (did you mean '||'?)");
            simple(Tok::kOr, 2);
            break;
          default:
            return Fail(i, "unexpected character '" + std::string(Utf8Char(i)) + "'");
        }
      }
      tokens_.push_back(std::move(t));
    }
  }

  // The character at `i`, as its whole UTF-8 sequence rather than a lone lead byte.
  std::string_view Utf8Char(size_t i) const {
    const auto lead = static_cast<unsigned char>(text_[i]);
    const size_t len = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return text_.substr(i, std::min(len, text_.size() - i));
  }

  // [0-9]+ ('.' [0-9]+)? ([eE] [+-]? [0-9]+)?  -- a '.' not followed by a digit is left for
  // the parser, so `1.x` fails there rather than reading as a number.
  bool LexNumber(size_t* pos, Token* t) {
    const size_t n = text_.size();
    size_t end = *pos;
    while (end < n && IsDigit(text_[end])) ++end;
    if (end + 1 < n && text_[end] == '.' && IsDigit(text_[end + 1])) {
      end += 2;
      while (end < n && IsDigit(text_[end])) ++end;
    }
    if (end < n && (text_[end] == 'e' || text_[end] == 'E')) {
      size_t e = end + 1;
      if (e < n && (text_[e] == '+' || text_[e] == '-')) ++e;
      if (e < n && IsDigit(text_[e])) {
        while (e < n && IsDigit(text_[e])) ++e;
        end = e;
      }
    }
    const char* first = text_.data() + *pos;
    const char* last = text_.data() + end;
    const auto [ptr, ec] = std::from_chars(first, last, t->number);
    if (ec != std::errc() || ptr != last || !std::isfinite(t->number)) {
      return Fail(*pos, "number out of range");
    }
    t->kind = Tok::kNumber;
    t->length = end - *pos;
    *pos = end;
    return true;
  }

  bool LexString(size_t* pos, Token* t) {
    const size_t n = text_.size();
    const size_t start = *pos;
    const char quote = text_[start];
    size_t i = start + 1;
    while (true) {
      if (i >= n) return Fail(start, "unterminated string");
      const char c = text_[i];
      if (c == quote) break;
      if (c != '\\') {
        t->text.push_back(c);
        ++i;
        continue;
      }
      if (i + 1 >= n) return Fail(start, "unterminated string");
      const char e = text_[i + 1];
      switch (e) {
        case '\\': t->text.push_back('\\'); break;
        case '\'': t->text.push_back('\''); break;
        case '"': t->text.push_back('"'); break;
        case 'n': t->text.push_back('\n'); break;
        case 't': t->text.push_back('\t'); break;
        case 'r': t->text.push_back('\r'); break;
        case 'u': {
          uint32_t cp = 0;
          const bool four = i + 6 <= n &&
                            std::from_chars(text_.data() + i + 2, text_.data() + i + 6, cp, 16)
                                    .ptr == text_.data() + i + 6;
          if (!four || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return Fail(i, "invalid escape '\\u': expected four hex digits of a code point");
          }
          AppendUtf8(cp, &t->text);
          i += 6;
          continue;
        }
        default:
          return Fail(i, "unknown escape '\\" + std::string(Utf8Char(i + 1)) + "' in string");
      }
      i += 2;
    }
    t->kind = Tok::kString;
    t->length = i + 1 - start;
    *pos = i + 1;
    return true;
  }

  // ---- Token access

  const Token& Peek(size_t ahead = 0) const {
    return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)];
  }
  const Token& Next() {
    const Token& t = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  bool Accept(Tok kind) {
    if (Peek().kind != kind) return false;
    Next();
    return true;
  }
  bool Expect(Tok kind, const char* message) {
    if (Accept(kind)) return true;
    return Fail(Peek().offset, message);
  }
  std::string Describe(const Token& t) const {
    if (t.kind == Tok::kEnd) return "end of expression";
    return "'" + std::string(text_.substr(t.offset, t.length)) + "'";
  }

  // ---- Node emission

  int32_t Constant(Value v) {
    const auto idx = static_cast<int32_t>(program_->constants.size());
    program_->constants.push_back(v);
    return Emit(Op::kConst, idx, 0, {});
  }

  int32_t StringConstant(std::string_view s) {
    program_->strings.emplace_back(s);
    return Constant(Value::String(program_->strings.back()));
  }

  bool IsConst(int32_t node) const { return program_->nodes[node].op == Op::kConst; }
  const Value& ConstValue(int32_t node) const {
    return program_->constants[program_->nodes[node].a];
  }

  int32_t Emit(Op op, int32_t a, int32_t b, std::initializer_list<int32_t> children,
               Op cmp = Op::kConst) {
    return EmitN(op, a, b, std::span<const int32_t>(children.begin(), children.size()), cmp);
  }

  int32_t EmitN(Op op, int32_t a, int32_t b, std::span<const int32_t> children,
                Op cmp = Op::kConst) {
    int depth = 0;
    bool all_const = !children.empty();
    for (int32_t c : children) {
      depth = std::max(depth, depth_[c]);
      all_const = all_const && IsConst(c);
    }
    const auto idx = static_cast<int32_t>(program_->nodes.size());
    program_->nodes.push_back(Node(op, a, b, cmp));
    depth_.push_back(depth + 1);
    max_depth_ = std::max(max_depth_, depth + 1);
    if (IsPure(op) && all_const) {
      Fold(idx);
    } else if (op == Op::kAnd || op == Op::kOr) {
      // `x && false` is false and `x || true` is true whatever x is (CEL), so one constant
      // side can decide the whole node.
      const bool decider = op == Op::kOr;
      for (int32_t c : children) {
        if (IsConst(c) && ConstValue(c).kind == Kind::kBool && ConstValue(c).boolean == decider) {
          ReplaceWithConstant(idx, Value::Bool(decider));
          break;
        }
      }
    }
    return idx;
  }

  void Fold(int32_t idx) {
    const Evaluator evaluator(*program_, fold_event_, nullptr, fold_scratch_.impl());
    const Value v = evaluator.Eval(idx);
    // Strings built in the scratch (concatenation, lower()) must move into the program.
    if (v.kind == Kind::kString) {
      program_->strings.emplace_back(v.string());
      ReplaceWithConstant(idx, Value::String(program_->strings.back()));
    } else {
      ReplaceWithConstant(idx, v);
    }
    fold_scratch_.impl()->Reset();
  }

  void ReplaceWithConstant(int32_t idx, Value v) {
    program_->nodes[idx] = Node(Op::kConst, static_cast<int32_t>(program_->constants.size()), 0);
    program_->constants.push_back(v);
    depth_[idx] = 1;
  }

  int32_t PathIndex(const FieldSchema::Path& path) {
    for (size_t i = 0; i < paths_.size(); ++i) {
      if (paths_[i] == path) return static_cast<int32_t>(i);
    }
    paths_.push_back(path);
    return static_cast<int32_t>(paths_.size() - 1);
  }

  // Turns an operand into a node: a pending path becomes the read it names.
  int32_t Finalize(const Operand& o) {
    switch (o.base) {
      case Operand::Base::kNone:
        return o.node;
      case Operand::Base::kCurrentEvent:
        if (o.path.empty()) return Emit(Op::kSelf, 0, 0, {});
        return Emit(Op::kField, PathIndex(o.path), 0, {});
      case Operand::Base::kEventNode:
        if (o.path.empty()) return o.base_arg;
        return Emit(Op::kEventField, o.base_arg, PathIndex(o.path), {o.base_arg});
      case Operand::Base::kStage:
        if (o.path.empty()) return Emit(Op::kStageList, o.base_arg, 0, {});
        return Emit(Op::kStageProject, o.base_arg, PathIndex(o.path), {});
    }
    return o.node;
  }

  // ---- Parser

  bool ParseOr(Operand* out) {
    if (!ParseAnd(out)) return false;
    while (Accept(Tok::kOr)) {
      Operand rhs;
      if (!ParseAnd(&rhs)) return false;
      *out = Binary(Op::kOr, *out, rhs);
    }
    return true;
  }

  bool ParseAnd(Operand* out) {
    if (!ParseRelation(out)) return false;
    while (Accept(Tok::kAnd)) {
      Operand rhs;
      if (!ParseRelation(&rhs)) return false;
      *out = Binary(Op::kAnd, *out, rhs);
    }
    return true;
  }

  bool ParseRelation(Operand* out) {
    if (!ParseAdditive(out)) return false;
    while (true) {
      const Token& t = Peek();
      Op op;
      switch (t.kind) {
        case Tok::kEq: op = Op::kEq; break;
        case Tok::kNe: op = Op::kNe; break;
        case Tok::kLt: op = Op::kLt; break;
        case Tok::kLe: op = Op::kLe; break;
        case Tok::kGt: op = Op::kGt; break;
        case Tok::kGe: op = Op::kGe; break;
        case Tok::kIdent:
          if (t.text != "in") return true;
          op = Op::kIn;
          break;
        default:
          return true;
      }
      Next();
      Operand rhs;
      if (!ParseAdditive(&rhs)) return false;
      *out = op == Op::kIn ? In(*out, rhs) : Binary(op, *out, rhs);
    }
  }

  bool ParseAdditive(Operand* out) {
    if (!ParseMultiplicative(out)) return false;
    while (Peek().kind == Tok::kPlus || Peek().kind == Tok::kMinus) {
      const Op op = Next().kind == Tok::kPlus ? Op::kAdd : Op::kSub;
      Operand rhs;
      if (!ParseMultiplicative(&rhs)) return false;
      *out = Binary(op, *out, rhs);
    }
    return true;
  }

  bool ParseMultiplicative(Operand* out) {
    if (!ParseUnary(out)) return false;
    while (true) {
      Op op;
      switch (Peek().kind) {
        case Tok::kStar: op = Op::kMul; break;
        case Tok::kSlash: op = Op::kDiv; break;
        case Tok::kPercent: op = Op::kMod; break;
        default: return true;
      }
      Next();
      Operand rhs;
      if (!ParseUnary(&rhs)) return false;
      *out = Binary(op, *out, rhs);
    }
  }

  bool ParseUnary(Operand* out) {
    // Every nested sub-expression passes through here, so this one counter bounds the
    // parser's recursion.
    if (nesting_ >= kMaxNesting) return Fail(Peek().offset, "expression is nested too deeply");
    ++nesting_;
    const bool ok = ParseUnaryInner(out);
    --nesting_;
    return ok;
  }

  bool ParseUnaryInner(Operand* out) {
    const Token& t = Peek();
    if (t.kind == Tok::kNot || t.kind == Tok::kMinus) {
      Next();
      Operand inner;
      if (!ParseUnary(&inner)) return false;
      const int32_t a = Finalize(inner);
      *out = Operand::Of(Emit(t.kind == Tok::kNot ? Op::kNot : Op::kNeg, a, 0, {a}), t.offset);
      return true;
    }
    return ParsePostfix(out);
  }

  bool ParsePostfix(Operand* out) {
    if (!ParsePrimary(out)) return false;
    while (true) {
      if (Accept(Tok::kDot)) {
        const Token& name = Peek();
        if (name.kind != Tok::kIdent) {
          return Fail(name.offset, "expected a field or method name after '.'");
        }
        Next();
        if (Peek().kind == Tok::kLParen) {
          if (!ParseMethod(name, out)) return false;
          continue;
        }
        if (!out->is_path()) {
          // A computed value, e.g. `($s[0]).x`: read the field if it turns out to be an event.
          const int32_t node = out->node;
          out->base = Operand::Base::kEventNode;
          out->base_arg = node;
          out->node = -1;
        }
        out->path.push_back(name.text);
        continue;
      }
      if (Peek().kind == Tok::kLBracket) {
        Next();
        // `x['name']` on a path is the same field access as `x.name`, for any name.
        if (out->is_path() && Peek().kind == Tok::kString && Peek(1).kind == Tok::kRBracket) {
          out->path.push_back(Next().text);
          Next();
          continue;
        }
        Operand index;
        if (!ParseOr(&index)) return false;
        if (!Expect(Tok::kRBracket, "expected ']' after index")) return false;
        if (out->is_path() && out->path.empty()) {
          if (out->base != Operand::Base::kStage) {
            return Fail(index.offset, "an event is indexed by a field name in quotes");
          }
          const int32_t node = StageEvent(out->base_arg, Finalize(index));
          out->base = Operand::Base::kEventNode;
          out->base_arg = node;
          continue;
        }
        const int32_t base = Finalize(*out);
        const int32_t i = Finalize(index);
        *out = Operand::Of(Emit(Op::kIndex, base, i, {base, i}), out->offset);
        continue;
      }
      return true;
    }
  }

  int32_t StageEvent(int32_t stage, int32_t index) {
    if (IsConst(index)) {
      const Value& v = ConstValue(index);
      if (v.kind == Kind::kNumber && v.number == std::trunc(v.number) && v.number >= -1e9 &&
          v.number <= 1e9) {
        return Emit(Op::kStageEventAt, stage, static_cast<int32_t>(v.number), {});
      }
    }
    return Emit(Op::kStageEvent, stage, index, {index});
  }

  bool ParsePrimary(Operand* out) {
    const Token& t = Peek();
    switch (t.kind) {
      case Tok::kNumber:
        Next();
        *out = Operand::Of(Constant(Value::Number(t.number)), t.offset);
        return true;
      case Tok::kString:
        Next();
        *out = Operand::Of(StringConstant(t.text), t.offset);
        return true;
      case Tok::kIdent: {
        if (t.text == "true" || t.text == "false") {
          Next();
          *out = Operand::Of(Constant(Value::Bool(t.text == "true")), t.offset);
          return true;
        }
        if (t.text == "null") {
          Next();
          *out = Operand::Of(Constant(Value::Null()), t.offset);
          return true;
        }
        if (t.text == "in") return Fail(t.offset, "unexpected 'in'");
        if (Peek(1).kind == Tok::kLParen) return ParseCall(out);
        Next();
        *out = Operand();
        out->base = Operand::Base::kCurrentEvent;
        out->offset = t.offset;
        if (t.text != "event") out->path.push_back(t.text);
        return true;
      }
      case Tok::kStage: {
        Next();
        const int stage = stages_ ? stages_(t.text) : -1;
        if (stage < 0) return Fail(t.offset, "unknown stage '" + t.text + "'");
        program_->reads_stages = true;
        *out = Operand();
        out->base = Operand::Base::kStage;
        out->base_arg = stage;
        out->offset = t.offset;
        return true;
      }
      case Tok::kLParen: {
        Next();
        Operand inner;
        if (!ParseOr(&inner)) return false;
        if (!Expect(Tok::kRParen, "expected ')'")) return false;
        *out = Operand::Of(Finalize(inner), t.offset);
        return true;
      }
      case Tok::kLBracket:
        return ParseList(out);
      case Tok::kEnd:
        return Fail(t.offset, "unexpected end of expression");
      default:
        return Fail(t.offset, "unexpected " + Describe(t));
    }
  }

  bool ParseList(Operand* out) {
    const size_t offset = Next().offset;  // '['
    std::vector<int32_t> items;
    if (!Accept(Tok::kRBracket)) {
      while (true) {
        Operand item;
        if (!ParseOr(&item)) return false;
        items.push_back(Finalize(item));
        if (Accept(Tok::kComma)) {
          if (Accept(Tok::kRBracket)) break;  // trailing comma, as CEL allows
          continue;
        }
        if (Accept(Tok::kRBracket)) break;
        return Fail(Peek().offset, "expected ',' or ']' in list");
      }
    }
    const bool all_const =
        std::all_of(items.begin(), items.end(), [&](int32_t i) { return IsConst(i); });
    if (all_const) {
      std::vector<Value>& values = program_->lists.emplace_back();
      for (int32_t i : items) values.push_back(ConstValue(i));
      *out = Operand::Of(Constant(Value::List(values.data(), values.size())), offset);
      return true;
    }
    const auto first = static_cast<int32_t>(program_->items.size());
    program_->items.insert(program_->items.end(), items.begin(), items.end());
    *out = Operand::Of(
        EmitN(Op::kMakeList, first, static_cast<int32_t>(items.size()), items), offset);
    return true;
  }

  bool ParseArgs(std::vector<Operand>* args) {
    if (Accept(Tok::kRParen)) return true;
    while (true) {
      Operand arg;
      if (!ParseOr(&arg)) return false;
      args->push_back(std::move(arg));
      if (Accept(Tok::kComma)) continue;
      return Expect(Tok::kRParen, "expected ')' after arguments");
    }
  }

  static std::string ArityMessage(std::string_view name, size_t arity, size_t got) {
    std::string m = "'" + std::string(name) + "' takes ";
    m += arity == 0 ? "no arguments" : arity == 1 ? "1 argument" : std::to_string(arity) + " arguments";
    return m + ", got " + std::to_string(got);
  }

  bool ParseCall(Operand* out) {
    const Token& name = Next();
    Next();  // '('
    const FunctionInfo* f = FindFunction(name.text);
    if (!f) {
      std::string message = "unknown function '" + name.text + "'";
      if (FindMethod(name.text)) message += " (it is a method: s." + name.text + "(...))";
      return Fail(name.offset, std::move(message));
    }
    std::vector<Operand> args;
    if (!ParseArgs(&args)) return false;
    if (args.size() != 1) return Fail(name.offset, ArityMessage(name.text, 1, args.size()));
    const Operand& arg = args[0];
    int32_t node;
    switch (f->op) {
      case Op::kHasField:
        if (arg.base == Operand::Base::kCurrentEvent && !arg.path.empty()) {
          node = Emit(Op::kHasField, PathIndex(arg.path), 0, {});
        } else if (arg.base == Operand::Base::kEventNode && !arg.path.empty()) {
          node = Emit(Op::kHasEventField, arg.base_arg, PathIndex(arg.path), {arg.base_arg});
        } else {
          return Fail(arg.offset, "has() takes a field path, such as has(a.b) or has($s[0].x)");
        }
        break;
      case Op::kCount:
      case Op::kSize:
        // The length of a stage's list, without building it.
        if (arg.base == Operand::Base::kStage && arg.path.empty()) {
          node = Emit(Op::kStageCount, arg.base_arg, 0, {});
          break;
        }
        [[fallthrough]];
      default: {
        const int32_t a = Finalize(arg);
        node = Emit(f->op, a, 0, {a});
        break;
      }
    }
    *out = Operand::Of(node, name.offset);
    return true;
  }

  // Parses `(args)` of `receiver.name(args)`; '(' is the next token.
  bool ParseMethod(const Token& name, Operand* receiver) {
    Next();  // '('
    const MethodInfo* m = FindMethod(name.text);
    if (!m) {
      std::string message = "unknown method '" + name.text + "'";
      if (FindFunction(name.text)) message += " (it is a function: " + name.text + "(x))";
      return Fail(name.offset, std::move(message));
    }
    std::vector<Operand> args;
    if (!ParseArgs(&args)) return false;
    if (args.size() != m->arity) {
      return Fail(name.offset, ArityMessage(name.text, m->arity, args.size()));
    }
    const int32_t r = Finalize(*receiver);
    int32_t node;
    if (m->op == Op::kMatches) {
      // The regex is compiled once, here; a pattern computed per event would defeat that.
      const int32_t arg = Finalize(args[0]);
      if (!IsConst(arg) || ConstValue(arg).kind != Kind::kString) {
        return Fail(args[0].offset, "matches() takes a regular expression in quotes");
      }
      const std::string_view pattern = ConstValue(arg).string();
      RE2::Options options;
      options.set_log_errors(false);
      auto re = std::make_unique<RE2>(re2::StringPiece(pattern.data(), pattern.size()), options);
      if (!re->ok()) {
        return Fail(args[0].offset, "invalid regular expression: " + re->error());
      }
      const auto idx = static_cast<int32_t>(program_->regexes.size());
      program_->regexes.push_back(std::move(re));
      node = Emit(Op::kMatches, r, idx, {r});
    } else if (m->arity == 1) {
      const int32_t a = Finalize(args[0]);
      node = Emit(m->op, r, a, {r, a});
    } else {
      node = Emit(m->op, r, 0, {r});
    }
    *receiver = Operand::Of(node, receiver->offset);
    return true;
  }

  Operand Binary(Op op, const Operand& lhs, const Operand& rhs) {
    const int32_t l = Finalize(lhs);
    const int32_t r = Finalize(rhs);
    if (op >= Op::kEq && op <= Op::kGe) {
      // The commonest condition shape, `field OP literal`, evaluates as one node.
      const Node& ln = program_->nodes[l];
      const Node& rn = program_->nodes[r];
      if (ln.op == Op::kField && rn.op == Op::kConst) {
        return Operand::Of(Emit(Op::kCmpFieldConst, ln.a, rn.a, {}, op), lhs.offset);
      }
      if (ln.op == Op::kConst && rn.op == Op::kField) {
        return Operand::Of(Emit(Op::kCmpFieldConst, rn.a, ln.a, {}, Mirror(op)), lhs.offset);
      }
    }
    return Operand::Of(Emit(op, l, r, {l, r}), lhs.offset);
  }

  Operand In(const Operand& lhs, const Operand& rhs) {
    const int32_t l = Finalize(lhs);
    const int32_t r = Finalize(rhs);
    if (!IsConst(l) && IsConst(r)) {
      const Value& list = ConstValue(r);
      if (list.kind == Kind::kList &&
          std::all_of(list.list.data, list.list.data + list.list.size, IsScalar)) {
        InSet set;
        for (size_t i = 0; i < list.list.size; ++i) set.Add(list.list.data[i]);
        set.Build();
        const auto idx = static_cast<int32_t>(program_->sets.size());
        program_->sets.push_back(std::move(set));
        return Operand::Of(Emit(Op::kInSet, l, idx, {l}), lhs.offset);
      }
    }
    return Operand::Of(Emit(Op::kIn, l, r, {l, r}), lhs.offset);
  }

  std::string_view text_;
  const Condition::StageResolver& stages_;
  Condition::Program* program_;
  std::vector<Token> tokens_;
  size_t pos_ = 0;
  std::optional<ConditionError> error_;
  std::vector<int> depth_;  // per node: height of its subtree
  int max_depth_ = 0;
  int nesting_ = 0;
  std::vector<FieldSchema::Path> paths_;
  Event fold_event_;
  EvalScratch fold_scratch_;
};

}  // namespace

namespace {

// Without a caller's scratch, Matches() uses one per thread rather than fail.
EvalScratch::Impl* FallbackScratch() {
  thread_local EvalScratch scratch;
  return scratch.impl();
}

}  // namespace

namespace {

std::vector<RequiredStrings> Required(const Condition::Program& p, int32_t idx);

// `a && b` needs what either side needs; a field both need must be in both lists.
std::vector<RequiredStrings> BothRequire(std::vector<RequiredStrings> a,
                                         const std::vector<RequiredStrings>& b) {
  for (const RequiredStrings& r : b) {
    auto same = std::find_if(a.begin(), a.end(), [&r](const RequiredStrings& x) { return x.slot == r.slot; });
    if (same == a.end()) {
      a.push_back(r);
      continue;
    }
    std::vector<std::string> common;
    std::set_intersection(same->values.begin(), same->values.end(), r.values.begin(),
                          r.values.end(), std::back_inserter(common));
    same->values = std::move(common);
  }
  return a;
}

// `a || b` needs, of the fields both sides need, a value either side allows.
std::vector<RequiredStrings> EitherRequires(const std::vector<RequiredStrings>& a,
                                            const std::vector<RequiredStrings>& b) {
  std::vector<RequiredStrings> out;
  for (const RequiredStrings& l : a) {
    for (const RequiredStrings& r : b) {
      if (l.slot != r.slot) continue;
      RequiredStrings& both = out.emplace_back();
      both.slot = l.slot;
      std::set_union(l.values.begin(), l.values.end(), r.values.begin(), r.values.end(),
                     std::back_inserter(both.values));
    }
  }
  return out;
}

std::vector<RequiredStrings> Required(const Condition::Program& p, int32_t idx) {
  const Node& n = p.nodes[idx];
  switch (n.op) {
    case Op::kCmpFieldConst: {
      // Equality with a string holds only for that string (Compare: across kinds it is false).
      const Value& c = p.constants[n.b];
      if (n.cmp != Op::kEq || c.kind != Kind::kString) return {};
      return {RequiredStrings{n.a, {std::string(c.string())}}};
    }
    case Op::kInSet: {
      const std::vector<std::string_view>* strings = p.sets[n.b].OnlyStrings();
      if (p.nodes[n.a].op != Op::kField || strings == nullptr) return {};
      RequiredStrings r{p.nodes[n.a].a, {strings->begin(), strings->end()}};
      std::sort(r.values.begin(), r.values.end());
      return {std::move(r)};
    }
    case Op::kAnd:
      return BothRequire(Required(p, n.a), Required(p, n.b));
    case Op::kOr:
      return EitherRequires(Required(p, n.a), Required(p, n.b));
    default:
      return {};
  }
}

}  // namespace

std::variant<Condition, ConditionError> Condition::Compile(std::string_view text,
                                                           FieldSchema* schema,
                                                           const StageResolver& stages) {
  auto program = std::make_shared<Program>();
  program->text.assign(text);
  Compiler compiler(program->text, stages, program.get());
  if (auto error = compiler.Run(schema)) return *std::move(error);
  program->required = Required(*program, program->root);
  return Condition(std::move(program));
}

bool Condition::Matches(const Event& event, const MatchView* match,
                        EvalScratch* scratch) const {
  EvalScratch::Impl* s = scratch ? scratch->impl() : FallbackScratch();
  s->Reset();
  return Evaluator(*program_, event, match, s).TestNode(program_->root) == Tri::kTrue;
}

bool Condition::reads_stages() const { return program_->reads_stages; }

const std::string& Condition::text() const { return program_->text; }

const std::vector<RequiredStrings>& Condition::required_strings() const {
  return program_->required;
}

}  // namespace vigil::nfa
