#include "server/alert_log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <optional>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <vector>

#include <boost/asio/post.hpp>

#include "common/files.h"
#include "common/json_text.h"
#include "common/time_util.h"
#include "nfa/event_key.h"
#include "nfa/match_json.h"

namespace vigil::server {

AlertLog::AlertLog(boost::asio::io_context& io, size_t recent_limit, size_t workers)
    : io_(io), recent_limit_(recent_limit) {
  for (size_t i = 0; i < workers; ++i) worker_sinks_.emplace_back(this, i);
}

AlertLog::~AlertLog() {
  Flush().IgnoreError();
  if (file_) std::fclose(file_);
  if (late_file_) std::fclose(late_file_);
}

namespace {

Status OpenForAppend(const std::string& path, std::FILE** file) {
  std::error_code ec;
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  *file = std::fopen(path.c_str(), "ae");
  if (!*file) return Status::IoError("cannot open " + path + ": " + std::strerror(errno));
  return Status::Ok();
}

// Appends `*pending` to `file`, which holds `*file_bytes` bytes, and empties it. On failure
// the file is cut back and `*pending` kept, so a later flush writes it whole (a checkpoint
// never counts alerts that are not in the file).
Status Append(std::FILE* file, std::string* pending, size_t* file_bytes) {
  if (!file || pending->empty()) return Status::Ok();
  const size_t written = std::fwrite(pending->data(), 1, pending->size(), file);
  if (written == pending->size() && std::fflush(file) == 0) {
    *file_bytes += pending->size();
    pending->clear();
    return Status::Ok();
  }
  const int error = errno;
  std::clearerr(file);
  if (::ftruncate(::fileno(file), static_cast<off_t>(*file_bytes)) != 0) {
    return Status::IoError(std::string("writing failed and cannot be undone: ") + std::strerror(errno));
  }
  return Status::IoError(std::string("writing failed: ") + std::strerror(error));
}

// A crash while an alert was being appended leaves part of a line: cut it, so the file stays
// whole lines (the replay writes that alert again).
Status CutTornLine(const std::string& path) {
  Result<std::string> text = ReadFile(path);
  if (!text.ok() || text->empty() || text->back() == '\n') return Status::Ok();
  const size_t keep = text->rfind('\n') + 1;  // npos + 1 == 0: no whole line
  std::error_code ec;
  std::filesystem::resize_file(path, keep, ec);
  if (ec) return Status::IoError("cannot cut the torn last line of " + path + ": " + ec.message());
  return Status::Ok();
}

// An alert line starts with its id: {"id":"<16 hex digits>",...
constexpr std::string_view kIdPrefix = "{\"id\":\"";

std::string IdText(uint64_t id) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(id));
  return text;
}

std::optional<uint64_t> IdOfLine(std::string_view line) {
  if (!line.starts_with(kIdPrefix) || line.size() < kIdPrefix.size() + 16) return std::nullopt;
  uint64_t id = 0;
  const char* begin = line.data() + kIdPrefix.size();
  const auto [end, err] = std::from_chars(begin, begin + 16, id, 16);
  if (err != std::errc() || end != begin + 16) return std::nullopt;
  return id;
}

uint64_t AlertId(const nfa::Nfa& nfa, std::string_view key_json, const nfa::Match& match) {
  std::string identity = nfa.pattern().id;
  identity += '\0';
  identity += std::to_string(nfa.pattern().version);
  identity += '\0';
  identity.append(key_json);
  identity += '\0';
  identity += match.timed_out ? 't' : 'm';
  for (const nfa::MatchedEvent& e : match.events) {
    identity += '\0';
    identity += std::to_string(e.stage);
    identity += ':';
    identity += std::to_string(e.event->line());
  }
  return nfa::HashKey(identity);
}

uint64_t InodeOf(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_ino) : 0;
}

}  // namespace

std::string AlertLog::OutputPosition() const {
  const std::lock_guard lock(mutex_);
  std::string position = std::to_string(InodeOf(alerts_path_));
  position += ':';
  position += std::to_string(file_bytes_);
  position += ':';
  position += std::to_string(late_file_bytes_);
  return position;
}

Result<size_t> AlertLog::Reconcile(std::string_view position) {
  // inode:alerts offset:late events offset
  uint64_t fields[3] = {0, 0, 0};
  if (!position.empty()) {
    const char* p = position.data();
    const char* end = position.data() + position.size();
    for (uint64_t& field : fields) {
      const auto [next, err] = std::from_chars(p, end, field);
      if (err != std::errc() || (next != end && *next != ':')) {
        return Status::Corruption("unreadable alert output position '" + std::string(position) + "'");
      }
      p = next == end ? end : next + 1;
    }
  }
  const uint64_t inode = fields[0], offset = fields[1];
  // Late events are written in input order, so the replay writes again exactly those after
  // the checkpoint: cut them.
  if (!position.empty() && fields[2] < late_file_bytes_) {
    std::error_code ec;
    std::filesystem::resize_file(late_path_, fields[2], ec);
    if (ec) return Status::IoError("cannot cut " + late_path_ + ": " + ec.message());
    late_file_bytes_ = fields[2];
  }
  const std::lock_guard lock(mutex_);
  // Newest file first, back to the one the position is in: rotation renames files, so the
  // inode finds it under whatever name it has now.
  for (size_t i = 0; i <= keep_files_; ++i) {
    const std::string path = i == 0 ? alerts_path_ : alerts_path_ + "." + std::to_string(i);
    Result<std::string> text = ReadFile(path);
    if (!text.ok()) continue;  // a rotation the crash cut short leaves a gap
    const bool holds_position = inode != 0 && InodeOf(path) == inode;
    size_t pos = holds_position ? std::min<size_t>(offset, text->size()) : 0;
    while (pos < text->size()) {
      size_t end = text->find('\n', pos);
      if (end == std::string::npos) end = text->size();
      if (auto id = IdOfLine(std::string_view(*text).substr(pos, end - pos))) ++written_before_[*id];
      pos = end + 1;
    }
    if (holds_position) break;
  }
  size_t ids = 0;
  for (const auto& [id, count] : written_before_) ids += count;
  return ids;
}

uint64_t AlertLog::EndReconcile() {
  const std::lock_guard lock(mutex_);
  written_before_.clear();
  return std::exchange(recognised_, 0);
}

namespace {

// A kill in the middle of a rotation's renames leaves a gap in FILE.1, FILE.2, ...: the files
// after it are numbered down to close it (lowest first, so no name is taken twice; a rename
// keeps the inode that output positions name). Done again at the next start if cut short.
Status CloseRotationGaps(const std::string& alerts_path) {
  namespace fs = std::filesystem;
  const fs::path path(alerts_path);
  const std::string prefix = path.filename().string() + ".";
  std::vector<uint64_t> numbers;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(path.parent_path().empty() ? "." : path.parent_path(), ec)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with(prefix)) continue;
    uint64_t number = 0;
    const char* first = name.data() + prefix.size();
    const char* last = name.data() + name.size();
    const auto [end, err] = std::from_chars(first, last, number);
    if (err == std::errc() && end == last && first != last && number > 0) numbers.push_back(number);
  }
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return Status::IoError("cannot list the rotated files of " + alerts_path + ": " + ec.message());
  }
  std::sort(numbers.begin(), numbers.end());
  for (size_t i = 0; i < numbers.size(); ++i) {
    if (numbers[i] == i + 1) continue;
    fs::rename(alerts_path + "." + std::to_string(numbers[i]), alerts_path + "." + std::to_string(i + 1), ec);
    if (ec) return Status::IoError("cannot renumber the rotated files of " + alerts_path + ": " + ec.message());
  }
  return Status::Ok();
}

}  // namespace

Status AlertLog::Open(const std::string& alerts_path, const std::string& late_events_path,
                      size_t max_file_bytes, size_t keep_files) {
  const std::lock_guard lock(mutex_);
  alerts_path_ = alerts_path;
  max_file_bytes_ = max_file_bytes;
  keep_files_ = keep_files;
  if (Status s = OpenAlertsFile(); !s.ok()) return s;
  std::error_code ec;
  late_path_ = late_events_path;
  if (Status s = CutTornLine(late_events_path); !s.ok()) return s;
  if (Status s = OpenForAppend(late_events_path, &late_file_); !s.ok()) return s;
  late_file_bytes_ = static_cast<size_t>(std::filesystem::file_size(late_events_path, ec));
  return Status::Ok();
}

Status AlertLog::OpenAlertsFile() {
  if (Status s = CloseRotationGaps(alerts_path_); !s.ok()) return s;
  if (Status s = CutTornLine(alerts_path_); !s.ok()) return s;
  if (Status s = OpenForAppend(alerts_path_, &file_); !s.ok()) return s;
  std::error_code ec;
  file_bytes_ = static_cast<size_t>(std::filesystem::file_size(alerts_path_, ec));
  return Status::Ok();
}

// FILE.(N-1) -> FILE.N, ..., FILE -> FILE.1, then a new FILE. Whole alerts only: rotation
// happens between flushes, never inside a line.
Status AlertLog::RotateIfFull() {
  if (!file_ || file_bytes_ < max_file_bytes_) return Status::Ok();
  std::fclose(file_);
  file_ = nullptr;
  std::error_code ec;
  namespace fs = std::filesystem;
  fs::remove(alerts_path_ + "." + std::to_string(keep_files_), ec);
  for (size_t i = keep_files_; i > 0; --i) {
    const std::string from = i == 1 ? alerts_path_ : alerts_path_ + "." + std::to_string(i - 1);
    if (!fs::exists(from, ec)) continue;  // fewer files than kept so far
    fs::rename(from, alerts_path_ + "." + std::to_string(i), ec);
    if (ec) return Status::IoError("cannot rotate " + alerts_path_ + ": " + ec.message());
  }
  file_bytes_ = 0;
  return OpenForAppend(alerts_path_, &file_);
}

std::vector<std::string> AlertLog::Recent(size_t limit) const {
  const std::lock_guard lock(mutex_);
  std::vector<std::string> out;
  for (auto it = recent_.rbegin(); it != recent_.rend() && out.size() < limit; ++it) {
    out.push_back(*it);
  }
  return out;
}

Status AlertLog::Flush() {
  {
    const std::lock_guard lock(mutex_);
    // What a failed write left comes first.
    if (flushing_.empty()) {
      flushing_.swap(pending_);
    } else {
      flushing_ += pending_;
      pending_.clear();
    }
  }
  // A rotation that failed part way left no file open: without one the alerts would only
  // pile up here while the checkpoints' output position moved on.
  if (!file_ && !alerts_path_.empty()) {
    if (Status s = OpenAlertsFile(); !s.ok()) return s;
  }
  // Written without the lock, so the workers append meanwhile.
  Status alerts = Append(file_, &flushing_, &file_bytes_);
  if (alerts.ok()) alerts = RotateIfFull();
  Status late = Append(late_file_, &pending_late_, &late_file_bytes_);
  return alerts.ok() ? late : alerts;
}

void AlertLog::Record(size_t worker, const nfa::Nfa& nfa, std::string_view key_json, const nfa::Match& match,
                      int64_t entered_steady_ns) {
  // Formatted before taking the lock: workers contend only for the appends.
  const uint64_t alert_id = AlertId(nfa, key_json, match);
  std::string alert(kIdPrefix);
  alert += IdText(alert_id);
  alert += "\",";
  nfa::AppendMatchFields(&alert, nfa, key_json, match);
  alert += ",\"version\":" + std::to_string(nfa.pattern().version);
  alert += ",\"first_event_time\":" + std::to_string(match.events.front().event->time_ms());
  alert += ",\"last_event_time\":" + std::to_string(match.events.back().event->time_ms());
  alert += ",\"detected_at\":" + std::to_string(WallClockMs());
  alert += "}";
  const std::string& id = nfa.pattern().id;

  // The forwarder keeps its own account of what it delivered before a crash (Kafka: the
  // committed input position), independent of what this file holds. It is called outside the
  // lock: producing to Kafka takes the client's own locks, and a worker descheduled there
  // while holding this one stalled every other worker (measured: most of their waits).
  if (forwarder_) forwarder_->Alert(worker, id, nfa.pattern().version, key_json, alert);
  const std::lock_guard lock(mutex_);
  if (auto written = written_before_.find(alert_id); written != written_before_.end()) {
    if (--written->second == 0) written_before_.erase(written);
    ++recognised_;
    return;
  }
  ++(match.timed_out ? timeouts_ : matches_)[id];
  if (entered_steady_ns > 0) {
    latency_.Observe((std::chrono::steady_clock::now().time_since_epoch().count() - entered_steady_ns) / 1e9);
  }
  pending_ += alert;
  pending_ += '\n';
  std::erase_if(subscribers_, [](const auto& weak) { return weak.expired(); });
  if (!subscribers_.empty()) {
    // Streams belong to the server's thread.
    boost::asio::post(io_, [subscribers = subscribers_,
                            message = "event: alert\ndata: " + alert + "\n\n"] {
      for (const auto& weak : subscribers) {
        if (auto stream = weak.lock()) stream->Send(message);
      }
    });
  }
  recent_.push_back(std::move(alert));
  if (recent_.size() > recent_limit_) recent_.pop_front();
}

void AlertLog::Subscribe(std::shared_ptr<EventStream> stream) {
  const std::lock_guard lock(mutex_);
  subscribers_.push_back(std::move(stream));
}

size_t AlertLog::subscribers() {
  const std::lock_guard lock(mutex_);
  std::erase_if(subscribers_, [](const auto& weak) {
    auto stream = weak.lock();
    return !stream || !stream->open();
  });
  return subscribers_.size();
}

SecondsHistogram AlertLog::latency() const {
  const std::lock_guard lock(mutex_);
  return latency_;
}

std::map<std::string, uint64_t> AlertLog::matches_by_pattern() const {
  const std::lock_guard lock(mutex_);
  return matches_;
}

std::map<std::string, uint64_t> AlertLog::timeouts_by_pattern() const {
  const std::lock_guard lock(mutex_);
  return timeouts_;
}

void AlertLog::OnMalformed(uint64_t line, std::string_view text, std::string_view reason) {
  if (forwarder_) forwarder_->Malformed(text, reason);
  if (problems_) problems_->push_back({line - first_line_, std::string(reason)});
}

void AlertLog::OnLate(const nfa::Event& event, int64_t watermark_ms) {
  ++late_events_;
  std::string reason = "late event: time " + std::to_string(event.time_ms()) +
                       " is below the watermark " + std::to_string(watermark_ms);
  pending_late_ += "{\"reason\":";
  AppendJsonString(&pending_late_, reason);
  pending_late_ += ",\"event\":";
  pending_late_ += event.raw();
  pending_late_ += "}\n";
  if (forwarder_) forwarder_->Late(event.raw(), reason);
  if (problems_) problems_->push_back({event.line() - first_line_, std::move(reason)});
}

void AlertLog::OnRejected(const nfa::Event&, const nfa::Nfa& nfa, std::string_view) {
  // In a mixed stream most events lack the keys of most patterns: that is counted per
  // pattern, not reported per event.
  ++unkeyed_[nfa.pattern().id];
}

}  // namespace vigil::server
