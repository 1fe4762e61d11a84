#include "server/pattern_registry.h"

#include <simdjson.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "common/files.h"
#include "common/json_text.h"
#include "common/time_util.h"

namespace vigil::server {
namespace fs = std::filesystem;

PatternRegistry::PatternRegistry(std::string directory, nfa::FieldSchema* schema,
                                 engine::ShardedMatcher* matcher)
    : directory_(std::move(directory)), schema_(schema), matcher_(matcher) {}

std::string PatternRegistry::PathOf(const std::string& id) const {
  return (fs::path(directory_) / (id + ".json")).string();
}

std::variant<std::shared_ptr<const nfa::Nfa>, PatternRegistry::Refusal> PatternRegistry::Compile(
    const std::string& text, uint64_t version, nfa::PatternOrigin origin, nfa::FieldSchema* schema) {
  nfa::ParsedPatterns parsed = nfa::ParsePatterns(text, "<request>", schema ? schema : schema_, origin);
  if (!parsed.errors.empty()) return Refusal{Refusal::Kind::kInvalid, parsed.errors, "invalid pattern"};
  if (parsed.patterns.size() != 1) {
    return Refusal{Refusal::Kind::kInvalid,
                   {{"<request>", {}, "a request holds exactly one pattern document, not " +
                                          std::to_string(parsed.patterns.size())}},
                   "invalid pattern"};
  }
  parsed.patterns[0].version = version;
  auto compiled =
      nfa::NfaCompiler::Compile(std::make_shared<const nfa::Pattern>(std::move(parsed.patterns[0])));
  if (!compiled.ok()) {
    return Refusal{Refusal::Kind::kInvalid, {{"<request>", {}, compiled.status().message()}},
                   "invalid pattern"};
  }
  return std::move(compiled).value();
}

std::vector<nfa::PatternError> PatternRegistry::Validate(const std::string& text) {
  // Against a copy: a pattern only checked must not add fields for every event to extract.
  nfa::FieldSchema scratch = *schema_;
  auto compiled = Compile(text, 0, nfa::PatternOrigin::kNew, &scratch);
  if (auto* refusal = std::get_if<Refusal>(&compiled)) return refusal->errors;
  return {};
}

std::variant<PatternRegistry::Change, PatternRegistry::Refusal> PatternRegistry::Create(
    const std::string& text, const std::string& content_type) {
  auto compiled = Compile(text);
  if (auto* refusal = std::get_if<Refusal>(&compiled)) return std::move(*refusal);
  auto nfa = std::get<std::shared_ptr<const nfa::Nfa>>(std::move(compiled));
  const std::string id = nfa->pattern().id;
  if (patterns_.count(id)) {
    return Refusal{Refusal::Kind::kAlreadyExists, {}, "pattern '" + id + "' already exists"};
  }
  return Put(id, text, content_type);
}

std::variant<PatternRegistry::Change, PatternRegistry::Refusal> PatternRegistry::Put(
    const std::string& id, const std::string& text, const std::string& content_type) {
  auto it = patterns_.find(id);
  if (!publisher_) {
    return PutLocal(id, text, content_type, it == patterns_.end() ? 1 : it->second.version + 1,
                    it == patterns_.end() || it->second.enabled);
  }
  // Checked here, so a bad document is refused to its sender, not published.
  auto compiled = Compile(text);
  if (auto* refusal = std::get_if<Refusal>(&compiled)) return std::move(*refusal);
  if (const std::string& got = std::get<std::shared_ptr<const nfa::Nfa>>(compiled)->pattern().id; got != id) {
    return Refusal{Refusal::Kind::kIdMismatch, {}, "the document's id '" + got + "' differs from '" + id + "' in the path"};
  }
  const bool created = it == patterns_.end();
  const bool enabled = created || it->second.enabled;
  last_dropped_ = 0;
  if (Status s = publisher_->Publish(id, &text, content_type, enabled); !s.ok()) {
    return Refusal{Refusal::Kind::kStorage, {}, s.message()};
  }
  it = patterns_.find(id);
  if (it == patterns_.end()) return Refusal{Refusal::Kind::kStorage, {}, "published, but not applied"};
  return Change{&it->second, created, last_dropped_};
}

std::variant<PatternRegistry::Change, PatternRegistry::Refusal> PatternRegistry::ApplyPublished(
    const std::string& id, const std::string* text, const std::string& content_type, bool enabled, uint64_t version) {
  auto it = patterns_.find(id);
  if (!text) {
    if (it != patterns_.end()) {
      if (Status s = DeleteLocal(id); !s.ok()) return Refusal{Refusal::Kind::kStorage, {}, s.message()};
    }
    return Change{};
  }
  if (it != patterns_.end() && it->second.source == *text) {
    // The same document: at most its enabled flag changed (its version and state stay).
    if (Status s = SetEnabledLocal(id, enabled, {}); !s.ok()) return Refusal{Refusal::Kind::kStorage, {}, s.message()};
    return Change{&it->second, false, 0};
  }
  return PutLocal(id, *text, content_type, version, enabled);
}

std::variant<PatternRegistry::Change, PatternRegistry::Refusal> PatternRegistry::PutLocal(
    const std::string& id, const std::string& text, const std::string& content_type, uint64_t version,
    bool enabled) {
  auto it = patterns_.find(id);
  StoredPattern next = it == patterns_.end() ? StoredPattern{} : it->second;
  next.version = version;
  next.enabled = enabled;
  next.disabled_reason.clear();  // a new document is judged afresh
  auto compiled = Compile(text, next.version);
  if (auto* refusal = std::get_if<Refusal>(&compiled)) return std::move(*refusal);
  auto nfa = std::get<std::shared_ptr<const nfa::Nfa>>(std::move(compiled));
  if (nfa->pattern().id != id) {
    return Refusal{Refusal::Kind::kIdMismatch, {},
                   "the document's id '" + nfa->pattern().id + "' differs from '" + id + "' in the path"};
  }
  Change change;
  change.created = it == patterns_.end();
  next.id = id;
  next.updated_ms = WallClockMs();
  if (change.created) next.created_ms = next.updated_ms;
  next.source = text;
  next.content_type = content_type;
  next.nfa = nfa;
  if (Status s = Persist(next); !s.ok()) {
    return Refusal{Refusal::Kind::kStorage, {}, s.message()};
  }
  if (Status s = Record(id, next.enabled ? nfa : nullptr); !s.ok()) {
    if (change.created) {
      std::error_code ec;
      fs::remove(PathOf(id), ec);
    } else {
      Persist(it->second).IgnoreError();
    }
    return Refusal{Refusal::Kind::kStorage, {}, s.message()};
  }
  const bool was_live = !change.created && it->second.enabled;
  if (next.enabled && was_live) {
    auto dropped = matcher_->ReplacePattern(nfa);
    if (dropped.ok()) change.dropped_partial_matches = last_dropped_ = *dropped;
  } else if (next.enabled) {
    matcher_->AddPattern(nfa).IgnoreError();  // absent from the matcher: cannot collide
  } else if (was_live) {
    matcher_->RemovePattern(id).status().IgnoreError();
  }
  StoredPattern& stored = patterns_[id];
  stored = std::move(next);
  change.pattern = &stored;
  if (hooks_.applied) hooks_.applied();
  return change;
}

Status PatternRegistry::Delete(const std::string& id) {
  if (!patterns_.contains(id)) return Status::NotFound("no pattern '" + id + "'");
  if (publisher_) return publisher_->Publish(id, nullptr, "", false);
  return DeleteLocal(id);
}

Status PatternRegistry::DeleteLocal(const std::string& id) {
  auto it = patterns_.find(id);
  std::error_code ec;
  fs::remove(PathOf(id), ec);
  if (ec) return Status::IoError("cannot delete " + PathOf(id) + ": " + ec.message());
  if (Status s = Record(id, nullptr); !s.ok()) {
    Persist(it->second).IgnoreError();
    return s;
  }
  if (it->second.enabled) matcher_->RemovePattern(id).status().IgnoreError();
  patterns_.erase(it);
  if (hooks_.applied) hooks_.applied();
  return Status::Ok();
}

Status PatternRegistry::SetEnabled(const std::string& id, bool enabled, const std::string& reason) {
  auto it = patterns_.find(id);
  if (it == patterns_.end()) return Status::NotFound("no pattern '" + id + "'");
  if (it->second.enabled == enabled) return Status::Ok();
  if (!publisher_) return SetEnabledLocal(id, enabled, reason);
  if (Status s = publisher_->Publish(id, &it->second.source, it->second.content_type, enabled); !s.ok()) return s;
  // The published change carries no reason: it is this instance's to tell.
  it = patterns_.find(id);
  if (it == patterns_.end() || it->second.enabled || reason.empty()) return Status::Ok();
  it->second.disabled_reason = reason;
  return Persist(it->second);
}

Status PatternRegistry::SetEnabledLocal(const std::string& id, bool enabled, const std::string& reason) {
  auto it = patterns_.find(id);
  if (it->second.enabled == enabled) return Status::Ok();
  StoredPattern next = it->second;
  next.enabled = enabled;
  next.disabled_reason = enabled ? "" : reason;
  next.updated_ms = WallClockMs();
  if (Status s = Persist(next); !s.ok()) return s;
  if (Status s = Record(id, enabled ? next.nfa : nullptr); !s.ok()) {
    Persist(it->second).IgnoreError();
    return s;
  }
  it->second = std::move(next);
  if (enabled) {
    matcher_->AddPattern(it->second.nfa).IgnoreError();
  } else {
    matcher_->RemovePattern(id).status().IgnoreError();
  }
  if (hooks_.applied) hooks_.applied();
  return Status::Ok();
}

Status PatternRegistry::Record(const std::string& id, const std::shared_ptr<const nfa::Nfa>& live) {
  return hooks_.record ? hooks_.record(id, live) : Status::Ok();
}

const StoredPattern* PatternRegistry::Get(const std::string& id) const {
  auto it = patterns_.find(id);
  return it == patterns_.end() ? nullptr : &it->second;
}

std::vector<const StoredPattern*> PatternRegistry::List() const {
  std::vector<const StoredPattern*> out;
  for (const auto& [id, p] : patterns_) out.push_back(&p);
  return out;
}

// One JSON file per pattern, written to a temporary name and renamed over the old one, so a
// crash leaves either the old or the new document, never half of one.
Status PatternRegistry::Persist(const StoredPattern& p) const {
  std::error_code ec;
  fs::create_directories(directory_, ec);
  if (ec) return Status::IoError("cannot create " + directory_ + ": " + ec.message());
  std::string json = "{\"id\":";
  AppendJsonString(&json, p.id);
  json += ",\"version\":" + std::to_string(p.version);
  json += std::string(",\"enabled\":") + (p.enabled ? "true" : "false");
  if (!p.disabled_reason.empty()) {
    json += ",\"disabled_reason\":";
    AppendJsonString(&json, p.disabled_reason);
  }
  json += ",\"created_ms\":" + std::to_string(p.created_ms);
  json += ",\"updated_ms\":" + std::to_string(p.updated_ms);
  json += ",\"content_type\":";
  AppendJsonString(&json, p.content_type);
  json += ",\"source\":";
  AppendJsonString(&json, p.source);
  json += "}\n";
  const std::string path = PathOf(p.id);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << json;
    out.flush();
    if (!out) return Status::IoError("cannot write " + tmp);
  }
  fs::rename(tmp, path, ec);
  if (ec) return Status::IoError("cannot rename " + tmp + ": " + ec.message());
  return Status::Ok();
}

std::vector<std::string> PatternRegistry::Load() {
  std::vector<std::string> errors;
  std::error_code ec;
  if (!fs::is_directory(directory_, ec)) return errors;
  constexpr std::string_view kJson[] = {".json"};
  simdjson::dom::parser parser;
  for (const std::string& file : FilesIn(directory_, kJson)) {
    simdjson::dom::element doc;
    if (auto err = parser.load(file).get(doc)) {
      errors.push_back(file + ": " + simdjson::error_message(err));
      continue;
    }
    StoredPattern p;
    std::string_view id, source, content_type;
    bool enabled = true;
    uint64_t version = 0;
    int64_t created = 0, updated = 0;
    if (doc["id"].get(id) || doc["source"].get(source) || doc["version"].get(version) ||
        doc["enabled"].get(enabled) || doc["created_ms"].get(created) ||
        doc["updated_ms"].get(updated) || doc["content_type"].get(content_type)) {
      errors.push_back(file + ": not a stored pattern");
      continue;
    }
    auto compiled = Compile(std::string(source), version, nfa::PatternOrigin::kStored);
    if (auto* refusal = std::get_if<Refusal>(&compiled)) {
      errors.push_back(file + ": " +
                       (refusal->errors.empty() ? refusal->message : refusal->errors[0].ToString()));
      continue;
    }
    p.id = id;
    p.source = source;
    p.content_type = content_type;
    p.enabled = enabled;
    if (std::string_view reason; !enabled && !doc["disabled_reason"].get(reason)) p.disabled_reason = reason;
    p.version = version;
    p.created_ms = created;
    p.updated_ms = updated;
    p.nfa = std::get<std::shared_ptr<const nfa::Nfa>>(std::move(compiled));
    if (p.nfa->pattern().id != p.id) {
      errors.push_back(file + ": id differs from its document's");
      continue;
    }
    patterns_[p.id] = std::move(p);
  }
  ApplyAll();
  return errors;
}

// The matcher may hold the patterns of a restored checkpoint (with their partial matches):
// those still stored as they were are kept, the others become what is stored.
void PatternRegistry::ApplyAll() {
  std::vector<std::string> gone;
  for (const auto& nfa : matcher_->patterns()) {
    auto it = patterns_.find(nfa->pattern().id);
    if (it == patterns_.end() || !it->second.enabled) gone.push_back(nfa->pattern().id);
  }
  for (const std::string& id : gone) matcher_->RemovePattern(id).status().IgnoreError();
  for (auto& [id, p] : patterns_) {
    if (!p.enabled) continue;
    const auto& live = matcher_->patterns();
    auto present = std::find_if(live.begin(), live.end(),
                                [&id = id](const auto& n) { return n->pattern().id == id; });
    if (present == live.end()) {
      matcher_->AddPattern(p.nfa).IgnoreError();
    } else if ((*present)->pattern().version != p.version || (*present)->pattern().source != p.nfa->pattern().source) {
      matcher_->ReplacePattern(p.nfa).status().IgnoreError();
    }
  }
}

}  // namespace vigil::server
