#include "server/audit_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/json_text.h"
#include "common/time_util.h"

namespace vigil::server {

Status AuditLog::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) return Status::IoError("cannot open audit log " + path + ": " + std::strerror(errno));
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  return Status::Ok();
}

AuditLog::~AuditLog() {
  if (fd_ >= 0) ::close(fd_);
}

void AuditLog::Record(const Entry& entry) {
  line_ = "{\"time\":";
  AppendJsonString(&line_, FormatRfc3339Ms(WallClockMs()));
  line_ += ",\"actor\":";
  AppendJsonString(&line_, entry.actor);
  line_ += ",\"address\":";
  AppendJsonString(&line_, entry.address);
  line_ += ",\"action\":";
  AppendJsonString(&line_, entry.action);
  if (!entry.pattern.empty()) {
    line_ += ",\"pattern\":";
    AppendJsonString(&line_, entry.pattern);
  }
  if (entry.version > 0) line_ += ",\"version\":" + std::to_string(entry.version);
  line_ += ",\"status\":" + std::to_string(entry.status);
  if (!entry.reason.empty()) {
    line_ += ",\"reason\":";
    AppendJsonString(&line_, entry.reason);
  }
  line_ += "}\n";
  ssize_t written = -1;
  while (fd_ >= 0) {
    written = ::write(fd_, line_.data(), line_.size());
    if (written >= 0 || errno != EINTR) break;
  }
  if (written == static_cast<ssize_t>(line_.size())) {
    ++records_;
  } else {
    ++write_errors_;
  }
}

}  // namespace vigil::server
