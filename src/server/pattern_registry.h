#pragma once
// PatternRegistry: the server's patterns, their versions and sources, kept in the data
// directory and applied to the matcher as they change (hot reload).
//
// Every change is validated and compiled first, written to disk (one JSON file per pattern,
// replaced atomically), then applied to the Matcher, so a pattern that is reported stored is
// both durable and live. A change reaches every worker at one input position (a barrier). Replacing a pattern drops that pattern's partial matches only.
// Not thread-safe: used on the server's one thread.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "common/status.h"
#include "engine/sharded_matcher.h"
#include "nfa/compiler.h"
#include "nfa/field_schema.h"
#include "nfa/pattern.h"

namespace vigil::server {

struct StoredPattern {
  std::string id;
  uint64_t version = 0;
  bool enabled = true;
  std::string disabled_reason;  // why vigil disabled it itself (its CPU budget); empty otherwise
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  std::string source;        // the document as uploaded
  std::string content_type;  // application/json or application/yaml
  std::shared_ptr<const nfa::Nfa> nfa;
};

class PatternRegistry {
 public:
  // Why a document was refused: the errors of its compilation (422) or a conflict of ids.
  struct Refusal {
    enum class Kind { kInvalid, kAlreadyExists, kIdMismatch, kNotFound, kStorage } kind;
    std::vector<nfa::PatternError> errors;
    std::string message;
  };

  struct Change {
    const StoredPattern* pattern = nullptr;
    bool created = false;
    size_t dropped_partial_matches = 0;
  };

  PatternRegistry(std::string directory, nfa::FieldSchema* schema, engine::ShardedMatcher* matcher);

  // Loads the stored patterns (at start-up) and makes the matcher's patterns what is stored:
  // a pattern the matcher already has at the stored version and source keeps its state (one
  // restored from a checkpoint). A stored file that no longer compiles is reported in the
  // returned errors and skipped; the others load.
  std::vector<std::string> Load();

  // How changes reach durable state. `record` is called once a change is stored and before the
  // matcher gets it, with the pattern as it will then be matched (null: matched no more); if
  // it fails, the stored change is undone and refused. `applied` is called after the matcher
  // got it. Load calls neither.
  struct Hooks {
    std::function<Status(const std::string& id, const std::shared_ptr<const nfa::Nfa>& live)> record;
    std::function<void()> applied;
  };
  void SetHooks(Hooks hooks) { hooks_ = std::move(hooks); }

  // Where patterns live when this registry is not their source of truth (Kafka's rules
  // topic): changes are validated here, published, and applied when they come back
  // (ApplyPublished), on every instance alike.
  class Publisher {
   public:
    virtual ~Publisher() = default;
    // Publishes pattern `id` as `source` (null: deleted), and returns once this instance has
    // applied it, or with why it could not.
    virtual Status Publish(const std::string& id, const std::string* source, const std::string& content_type,
                           bool enabled) = 0;
  };
  void SetPublisher(Publisher* publisher) { publisher_ = publisher; }
  // A change read back from where patterns are published, in their order: `text` null for a
  // deletion; `version` as that source numbers it. The same document again changes at most
  // its enabled flag (it keeps its version and partial matches). A document that does not
  // compile is refused and not applied.
  std::variant<Change, Refusal> ApplyPublished(const std::string& id, const std::string* text,
                                               const std::string& content_type, bool enabled, uint64_t version);

  // Compiles `text` without storing it. Empty when valid.
  std::vector<nfa::PatternError> Validate(const std::string& text);

  // Adds a new pattern; refused if its id exists.
  std::variant<Change, Refusal> Create(const std::string& text, const std::string& content_type);
  // Creates or replaces pattern `id` (the document's id must be `id`).
  std::variant<Change, Refusal> Put(const std::string& id, const std::string& text,
                                    const std::string& content_type);
  Status Delete(const std::string& id);
  // `reason`: why vigil itself disables it, shown with the pattern until it is enabled again.
  Status SetEnabled(const std::string& id, bool enabled, const std::string& reason = {});

  const StoredPattern* Get(const std::string& id) const;
  std::vector<const StoredPattern*> List() const;

 private:
  // Compiles `text` as a pattern of `version` (0: only to check or identify it), against
  // `schema` (default: the live one).
  std::variant<std::shared_ptr<const nfa::Nfa>, Refusal> Compile(
      const std::string& text, uint64_t version = 0, nfa::PatternOrigin origin = nfa::PatternOrigin::kNew,
      nfa::FieldSchema* schema = nullptr);
  Status Persist(const StoredPattern& p) const;
  void ApplyAll();
  // The changes themselves, applied here (Put, Delete and SetEnabled without a publisher).
  std::variant<Change, Refusal> PutLocal(const std::string& id, const std::string& text,
                                         const std::string& content_type, uint64_t version, bool enabled);
  Status DeleteLocal(const std::string& id);
  Status SetEnabledLocal(const std::string& id, bool enabled, const std::string& reason);
  Status Record(const std::string& id, const std::shared_ptr<const nfa::Nfa>& live);
  std::string PathOf(const std::string& id) const;

  std::string directory_;
  nfa::FieldSchema* schema_;
  engine::ShardedMatcher* matcher_;
  std::map<std::string, StoredPattern> patterns_;
  Hooks hooks_;
  Publisher* publisher_ = nullptr;
  size_t last_dropped_ = 0;  // by the last change applied
};

}  // namespace vigil::server
