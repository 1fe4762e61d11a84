#pragma once
// AuditLog: one NDJSON line per request to change a pattern through the API by a caller it
// knows (allowed or not; requests without a valid token are only counted):
//   {"time":"2026-12-01T11:30:00.125Z","actor":"admin","address":"10.0.0.7",
//    "action":"replace","pattern":"card-testing","version":4,"status":200}
// `actor` is the role the bearer token gave (admin, read-only), or "anonymous" when the API
// has no token; a token itself is never written. vigil's own changes (a pattern disabled for
// its CPU cost) have the actor "vigil", no address and a "reason".
// `version` is there when the change made one. Each line goes out in one write(2) on a file
// opened for appending, so lines from a crash are never interleaved or half-merged.
// Not thread-safe: used on the server's thread.

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace vigil::server {

class AuditLog {
 public:
  struct Entry {
    std::string_view actor;
    std::string_view address;
    std::string_view action;   // create, replace, delete, enable, disable
    std::string_view pattern;  // the id; empty when the request did not name one
    int64_t version = 0;       // 0: no version came of it
    unsigned status = 0;       // the HTTP status answered
    std::string_view reason;   // why vigil made the change itself; empty for requests
  };

  AuditLog() = default;
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Opens (creating) `path` for appending. Errors: kIoError.
  Status Open(const std::string& path);

  // Appends one line. A failed write (or a log never opened) is counted, not thrown: the
  // change itself stands.
  void Record(const Entry& entry);

  uint64_t records() const { return records_; }
  uint64_t write_errors() const { return write_errors_; }

 private:
  int fd_ = -1;
  std::string line_;
  uint64_t records_ = 0;
  uint64_t write_errors_ = 0;
};

}  // namespace vigil::server
