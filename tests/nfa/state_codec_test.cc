// The stored form of a key's NFA state: exact round trips, values of format 1 stay readable,
// and damaged values are refused whole.
#include "nfa/state_codec.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "nfa/event_parser.h"
#include "support/nfa_harness.h"

TEST_SUITE_BEGIN("nfa");

namespace {

using namespace vigil;

// Runs a looping pattern (runs that share prefixes) over one key's events and keeps the state.
class LoopingState {
 public:
  LoopingState() : parser_(&schema_, "ts") {
    nfa::ParsedPatterns parsed = nfa::ParsePatterns(
        "id: cab\nsequence:\n"
        "  - begin: c\n    where: name == 'c'\n"
        "  - followed_by: a\n    where: name == 'a'\n    one_or_more: true\n    allow_combinations: true\n"
        "  - followed_by: b\n    where: name == 'b'\n",
        "test.yaml", &schema_);
    REQUIRE(parsed.errors.empty());
    auto compiled = nfa::NfaCompiler::Compile(std::make_shared<const nfa::Pattern>(std::move(parsed.patterns[0])));
    REQUIRE(compiled.ok());
    nfa_ = compiled.value();
    parser_.Refresh();
  }
  ~LoopingState() { runtime_.Clear(&state_); }

  void Feed(const std::vector<std::string>& events) {
    std::vector<nfa::Match> out;
    for (const std::string& text : events) {
      const auto event = Restore(text);
      REQUIRE(event.ok());
      (*event)->set_line(++line_);
      nfa::CurrentEvent current(event->get(), line_ * 10);
      current.Adopt(*event);
      runtime_.AdvanceTime(*nfa_, &state_, (*event)->time_ms(), &out);
      runtime_.Process(*nfa_, &state_, &current, &out);
    }
  }

  Result<nfa::EventRef> Restore(std::string_view text) {
    std::string padded(text);
    padded.append(simdjson::SIMDJSON_PADDING, '\0');
    nfa::Event scratch;
    if (Status s = parser_.Parse(std::string_view(padded).substr(0, text.size()), padded.size(), &scratch); !s.ok()) {
      return s;
    }
    return scratch.Retain();
  }
  nfa::EventRestorer restorer() {
    return [this](std::string_view text) { return Restore(text); };
  }

  const nfa::Nfa& nfa() const { return *nfa_; }
  nfa::NfaRuntime& runtime() { return runtime_; }
  const nfa::KeyNfaState& state() const { return state_; }

 private:
  nfa::FieldSchema schema_;
  nfa::EventParser parser_;
  std::shared_ptr<const nfa::Nfa> nfa_;
  nfa::NfaRuntime runtime_;
  nfa::KeyNfaState state_;
  uint64_t line_ = 0;
};

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (const char c : bytes) {
    out += kDigits[static_cast<uint8_t>(c) >> 4];
    out += kDigits[static_cast<uint8_t>(c) & 15];
  }
  return out;
}

std::string Unhex(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out += static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16));
  return out;
}

}  // namespace

TEST_CASE("Key state codec: decoding and encoding again gives the same bytes and the same runs") {
  LoopingState original;
  original.Feed(vigil::testing::Stream("c1 a1 a2 d1 a3"));
  REQUIRE(original.state().partial.size() > 4);
  std::string bytes;
  nfa::EncodeKeyState(original.state(), &bytes);

  LoopingState restored;
  nfa::KeyNfaState state;
  REQUIRE(nfa::DecodeKeyState(bytes, restored.nfa(), restored.restorer(), &restored.runtime().mutable_buffer(), &state).ok());
  std::string again;
  nfa::EncodeKeyState(state, &again);
  CHECK(Hex(again) == Hex(bytes));
  // Prefixes are shared as before: as many nodes as the original runs hold.
  CHECK(restored.runtime().buffer().live_nodes() == original.runtime().buffer().live_nodes());
  REQUIRE(state.partial.size() == original.state().partial.size());
  for (size_t i = 0; i < state.partial.size(); ++i) {
    const nfa::ComputationState& a = original.state().partial[i];
    const nfa::ComputationState& b = state.partial[i];
    CHECK(a.state == b.state);
    CHECK(a.start_ms == b.start_ms);
    CHECK(a.previous_ms == b.previous_ms);
    CHECK(a.start_seq == b.start_seq);
    for (const nfa::BufferNode *x = a.node, *y = b.node; x || y; x = x->previous, y = y->previous) {
      REQUIRE((x && y));
      CHECK(x->stage == y->stage);
      CHECK(x->event->raw() == y->event->raw());
      CHECK(x->event->seq() == y->event->seq());
      CHECK(x->event->line() == y->event->line());
      CHECK(x->event->time_ms() == y->event->time_ms());
    }
  }
  restored.runtime().Clear(&state);
  CHECK(restored.runtime().buffer().live_nodes() == 0);
}

TEST_CASE("Key state codec: a value written in format 1 is still read") {
  // Written by format 1 for the state after "c1 a1" (one run waiting for more a's or a b).
  // Never regenerate it: it stands for the values already on users' disks.
  const std::string format1 = Unhex(
      "01"      // format
      "02"      // events: 2
      "0a0130"  // seq 10, line 1, 48 bytes of text:
      "7b226964223a226331222c227473223a312c226e616d65223a2263222c227072696365223a302c226b223a226b31227d"
      "140230"  // seq 20, line 2, 48 bytes:
      "7b226964223a226131222c227473223a322c226e616d65223a2261222c227072696365223a302c226b223a226b31227d"
      "02"      // nodes: 2
      "000100"  // event 0, stage 0, no previous
      "010201"  // event 1, stage 1, after node 0
      "01"      // partial: 1
      "0202"    // state 2, at node 1
      "0204"    // start 1 ms, previous 2 ms
      "0b"      // start seq 10
      "00");    // completed: 0
  LoopingState restored;
  nfa::KeyNfaState state;
  const Status decoded =
      nfa::DecodeKeyState(format1, restored.nfa(), restored.restorer(), &restored.runtime().mutable_buffer(), &state);
  REQUIRE_MESSAGE(decoded.ok(), decoded.message());
  REQUIRE(state.partial.size() == 1);
  CHECK(state.partial[0].start_seq == 10);
  CHECK(state.partial[0].node->event->raw().find("\"a1\"") != std::string_view::npos);
  CHECK(state.partial[0].node->previous->event->line() == 1);
  restored.runtime().Clear(&state);
}

TEST_CASE("Key state codec: a truncated, extended or foreign value is refused whole") {
  LoopingState original;
  original.Feed(vigil::testing::Stream("c1 a1 a2 a3"));
  std::string bytes;
  nfa::EncodeKeyState(original.state(), &bytes);
  LoopingState target;
  auto decode = [&](std::string_view value) {
    nfa::KeyNfaState state;
    const Status s = nfa::DecodeKeyState(value, target.nfa(), target.restorer(),
                                         &target.runtime().mutable_buffer(), &state);
    CHECK(state.empty());
    return s;
  };
  for (size_t size = 0; size < bytes.size(); ++size) {
    CAPTURE(size);
    CHECK(decode(std::string_view(bytes).substr(0, size)).code() == Status::Code::kCorruption);
  }
  CHECK(decode(bytes + "x").code() == Status::Code::kCorruption);
  std::string future = bytes;
  future[0] = static_cast<char>(nfa::kKeyStateFormat + 1);
  CHECK(decode(future).code() == Status::Code::kCorruption);
  // Nothing a refused value built is left behind.
  CHECK(target.runtime().buffer().live_nodes() == 0);
}
