// vigil-http-load: posts an NDJSON event file to `vigil serve` over HTTP, for load tests.
//
//   vigil-http-load --port P --events FILE [--host H] [--batch N] [--connections C]
//                   [--rate R] [--duration S] [--max-failures F] [--timeout S] [--retry-ms M]
//
// Reads FILE line by line and posts it to http://H:P/events (Content-Type
// application/x-ndjson) in batches of N lines, over C keep-alive connections, each with one
// request in flight at a time. With --rate R (events per second) batch i, whose first event
// is the k-th of the file, is sent no earlier than k / R seconds after the start; without it
// batches go as fast as the server answers. Sending stops at the end of the file or after
// --duration seconds, whichever comes first. A batch refused with 503 and Retry-After
// (vigil's answer while matching is behind: nothing was taken) is sent again after --retry-ms
// milliseconds, not after the Retry-After second, so the server is measured at its own pace;
// these answers are counted apart and are not failures. A resent batch keeps its first
// stamps (below), so latency includes the wait; a batch still refused after --timeout fails.
//
// Every event is stamped with its wall-clock send time: `"sent_at":<epoch ms>,` is inserted
// right after the opening `{` of each line when its batch is sent, so alerts, which carry
// the original events and a detection time, give the ingest-to-alert latency.
//
// Prints a summary (one "name value" pair a line, for scripts) to standard output. Exits 1
// on a connection error, a request timeout, or more non-202 answers than --max-failures;
// 2 on bad arguments or an unreadable file.
//
// One thread runs every connection (Boost.Asio, asynchronous), so the client needs one CPU.

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// A connection idle for longer is reopened before its next request (vigil drops idle
// connections after 30 s).
constexpr auto kMaxIdle = std::chrono::seconds(20);

constexpr const char* kUsage =
    "usage: vigil-http-load --port P --events FILE [options]\n"
    "  --host H            server address (default 127.0.0.1)\n"
    "  --port P            server port (required)\n"
    "  --events FILE       NDJSON events, one object a line (required)\n"
    "  --batch N           lines per POST /events (default 1000)\n"
    "  --connections C     keep-alive connections, one request in flight each (default 4)\n"
    "  --rate R            events per second, 0 = as fast as possible (default 0)\n"
    "  --duration S        stop sending after S seconds, 0 = at the end of the file (default 0)\n"
    "  --max-failures F    non-202 answers tolerated before failing (default 0)\n"
    "  --timeout S         seconds to wait for a connection or an answer (default 60)\n"
    "  --retry-ms M        resend a batch refused with 503 + Retry-After after M ms (default 2)\n"
    "Each event gets \"sent_at\":<epoch ms> (its send time) after its opening '{'.\n"
    "Exit status: 0 ok, 1 connection error, timeout or too many non-202 answers, 2 usage.\n";

struct Options {
  std::string host = "127.0.0.1";
  unsigned port = 0;
  std::string events_file;
  uint64_t batch = 1000;
  uint64_t connections = 4;
  double rate = 0;
  double duration = 0;
  uint64_t max_failures = 0;
  double timeout = 60;
  uint64_t retry_ms = 2;
};

template <typename T>
bool ParseNumber(std::string_view text, T& out) {
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size();
}

bool ParseSeconds(const char* text, double& out) {
  char* end = nullptr;
  out = std::strtod(text, &end);
  return end != text && *end == '\0' && std::isfinite(out) && out >= 0;
}

bool ParseArgs(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "vigil-http-load: %s needs a value\n", argv[i]);
      return false;
    }
    const char* value = argv[++i];
    bool ok = false;
    if (flag == "--host") {
      o.host = value;
      ok = !o.host.empty();
    } else if (flag == "--port") {
      ok = ParseNumber(value, o.port) && o.port >= 1 && o.port <= 65535;
    } else if (flag == "--events") {
      o.events_file = value;
      ok = !o.events_file.empty();
    } else if (flag == "--batch") {
      ok = ParseNumber(value, o.batch) && o.batch >= 1 && o.batch <= 10000000;
    } else if (flag == "--connections") {
      ok = ParseNumber(value, o.connections) && o.connections >= 1 && o.connections <= 1024;
    } else if (flag == "--rate") {
      ok = ParseSeconds(value, o.rate);
    } else if (flag == "--duration") {
      ok = ParseSeconds(value, o.duration);
    } else if (flag == "--max-failures") {
      ok = ParseNumber(value, o.max_failures);
    } else if (flag == "--retry-ms") {
      ok = ParseNumber(value, o.retry_ms) && o.retry_ms <= 60000;
    } else if (flag == "--timeout") {
      ok = ParseSeconds(value, o.timeout) && o.timeout > 0;
    } else {
      std::fprintf(stderr, "vigil-http-load: unknown argument %s\n%s", argv[i - 1], kUsage);
      return false;
    }
    if (!ok) {
      std::fprintf(stderr, "vigil-http-load: bad value for %s: %s\n", argv[i - 1], value);
      return false;
    }
  }
  if (o.port == 0 || o.events_file.empty()) {
    std::fputs(kUsage, stderr);
    return false;
  }
  return true;
}

int64_t EpochMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool IsBlank(std::string_view line) {
  return line.find_first_not_of(" \t\r") == std::string_view::npos;
}

// A run of lines read from the file, each followed by '\n'.
struct Batch {
  std::string text;
  uint64_t first_event = 0;  // index in the file (blank lines not counted)
  uint64_t events = 0;
};

// Appends `text` (lines each ending in '\n') to `body`, with `"sent_at":<stamp>` inserted
// after the first '{' of every line whose first non-blank character is '{'. Other lines go
// unchanged, for the server to reject.
void AppendStamped(std::string* body, std::string_view text, std::string_view stamp) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    end = end == std::string_view::npos ? text.size() : end + 1;
    const std::string_view line = text.substr(pos, end - pos);
    pos = end;
    const size_t brace = line.find_first_not_of(" \t");
    if (brace == std::string_view::npos || line[brace] != '{') {
      body->append(line);
      continue;
    }
    body->append(line.substr(0, brace + 1));
    body->append("\"sent_at\":");
    body->append(stamp);
    const size_t next = line.find_first_not_of(" \t\r\n", brace + 1);
    if (next != std::string_view::npos && line[next] != '}') body->push_back(',');
    body->append(line.substr(brace + 1));
  }
}

// Non-negative integer after `"name":` in `body`, or nullopt.
std::optional<uint64_t> JsonCount(std::string_view body, std::string_view name) {
  const std::string key = "\"" + std::string(name) + "\":";
  const size_t at = body.find(key);
  if (at == std::string_view::npos) return std::nullopt;
  uint64_t value = 0;
  const char* begin = body.data() + at + key.size();
  auto [ptr, ec] = std::from_chars(begin, body.data() + body.size(), value);
  if (ec != std::errc()) return std::nullopt;
  return value;
}

uint64_t Occurrences(std::string_view body, std::string_view needle) {
  uint64_t n = 0;
  for (size_t at = body.find(needle); at != std::string_view::npos;
       at = body.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

// State shared by every connection. Everything runs on one thread.
struct Run {
  Options options;
  std::ifstream in;
  uint64_t events_read = 0;
  bool end_of_file = false;
  bool stopping = false;
  std::string stopped_by = "end_of_file";
  bool failed = false;
  Clock::time_point start;
  std::optional<Clock::time_point> deadline;

  uint64_t events_sent = 0;  // in batches answered 202
  uint64_t batches = 0;
  uint64_t non_202 = 0;     // answers neither 202 nor a 503 to retry
  uint64_t overloaded = 0;  // 503 with Retry-After: the batch was sent again
  uint64_t accepted = 0;
  uint64_t rejected = 0;
  uint64_t rejected_late = 0;
  uint64_t unparsed_answers = 0;
  std::vector<double> request_ms;
  Clock::time_point last_answer;

  void Fail(const std::string& message) {
    std::fprintf(stderr, "vigil-http-load: %s\n", message.c_str());
    failed = true;
    stopping = true;
    stopped_by = "error";
  }

  // The next batch, or false at the end of the file (or once stopping).
  bool Read(Batch* batch) {
    batch->text.clear();
    batch->events = 0;
    batch->first_event = events_read;
    if (stopping || end_of_file) return false;
    std::string line;
    while (batch->events < options.batch && std::getline(in, line)) {
      if (IsBlank(line)) continue;
      batch->text += line;
      batch->text.push_back('\n');
      ++batch->events;
    }
    if (batch->events < options.batch) {
      if (in.bad()) Fail("reading " + options.events_file + " failed");
      end_of_file = true;
    }
    events_read += batch->events;
    return batch->events > 0 && !failed;
  }
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(asio::io_context& io, Run& run, tcp::endpoint endpoint, int id)
      : io_(io), run_(run), endpoint_(endpoint), id_(id), stream_(io), timer_(io) {}

  // Connects synchronously, before the clock starts.
  bool Connect() {
    beast::error_code ec;
    stream_.socket().connect(endpoint_, ec);
    if (ec) {
      run_.Fail(Where() + "connect to " + Endpoint() + ": " + ec.message());
      return false;
    }
    stream_.socket().set_option(tcp::no_delay(true), ec);
    last_used_ = Clock::now();
    return true;
  }

  // Closes the connection and opens a new one.
  bool Reconnect() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
    buffer_.clear();
    return Connect();
  }

  void Next() {
    if (run_.stopping) return;
    if (!run_.Read(&batch_)) {
      run_.stopping = true;
      return;
    }
    Clock::time_point due = Clock::now();
    if (run_.options.rate > 0) {
      due = run_.start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                             static_cast<double>(batch_.first_event) / run_.options.rate));
    }
    if (run_.deadline && std::max(due, Clock::now()) >= *run_.deadline) {
      if (!run_.stopping) run_.stopped_by = "duration";
      run_.stopping = true;
      return;
    }
    if (due > Clock::now()) {
      timer_.expires_at(due);
      timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
        if (!ec) self->Send();
      });
    } else {
      Send();
    }
  }

 private:
  std::string Where() const { return "connection " + std::to_string(id_) + ": "; }
  std::string Endpoint() const {
    return run_.options.host + ":" + std::to_string(run_.options.port);
  }

  void Send() {
    if (run_.failed) return;
    // vigil closes a keep-alive connection after 30 s without a request; at low rates a
    // connection can wait that long, so it is reopened instead of failing on a closed socket.
    if (Clock::now() - last_used_ > kMaxIdle && !Reconnect()) {
      io_.stop();
      return;
    }
    char stamp[24];
    auto [end, ec] = std::to_chars(stamp, stamp + sizeof stamp, EpochMs());
    request_ = {};
    request_.method(http::verb::post);
    request_.target("/events");
    request_.version(11);
    request_.keep_alive(true);
    request_.set(http::field::host, Endpoint());
    request_.set(http::field::content_type, "application/x-ndjson");
    std::string& body = request_.body();
    body.reserve(batch_.text.size() + batch_.events * 32);
    AppendStamped(&body, batch_.text, std::string_view(stamp, end - stamp));
    request_.prepare_payload();
    first_sent_ = Clock::now();
    Write();
  }

  void Write() {
    stream_.expires_after(std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(run_.options.timeout)));
    http::async_write(stream_, request_, [self = shared_from_this()](beast::error_code ec, size_t) {
      self->OnWrite(ec);
    });
  }

  void OnWrite(beast::error_code ec) {
    if (ec) return Broken("sending a batch", ec);
    response_ = {};
    http::async_read(stream_, buffer_, response_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (ec) return Broken("reading the answer", ec);
    const Clock::time_point now = Clock::now();
    run_.last_answer = now;
    const std::string& body = response_.body();
    if (response_.result() == http::status::service_unavailable &&
        response_.find(http::field::retry_after) != response_.end() && response_.keep_alive()) {
      ++run_.overloaded;
      if (run_.failed) return;
      if (now - first_sent_ > std::chrono::duration<double>(run_.options.timeout)) {
        run_.Fail(Where() + "a batch was refused with 503 for longer than --timeout");
        io_.stop();
        return;
      }
      timer_.expires_after(std::chrono::milliseconds(run_.options.retry_ms));
      timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
        if (!ec) self->Write();
      });
      return;
    }
    // A batch's request time runs from its first try to the answer that took or refused it.
    run_.request_ms.push_back(std::chrono::duration<double, std::milli>(now - first_sent_).count());
    ++run_.batches;
    if (response_.result() != http::status::accepted) {
      ++run_.non_202;
      if (run_.non_202 <= 5) {
        std::fprintf(stderr, "vigil-http-load: %sHTTP %u: %.300s\n", Where().c_str(),
                     response_.result_int(), body.c_str());
      }
      if (run_.non_202 > run_.options.max_failures) {
        run_.Fail(std::to_string(run_.non_202) + " non-202 answers, more than --max-failures " +
                  std::to_string(run_.options.max_failures));
        io_.stop();
        return;
      }
    } else {
      run_.events_sent += batch_.events;
      if (auto accepted = JsonCount(body, "accepted")) {
        run_.accepted += *accepted;
        run_.rejected += Occurrences(body, "{\"index\":");
        run_.rejected_late += Occurrences(body, "\"reason\":\"late event");
      } else {
        ++run_.unparsed_answers;
      }
    }
    if (!response_.keep_alive()) {
      // The server closed the connection (it does after an unreadable request): reopen it.
      if (!Reconnect()) {
        io_.stop();
        return;
      }
    }
    last_used_ = Clock::now();
    Next();
  }

  void Broken(const char* what, beast::error_code ec) {
    run_.Fail(Where() + what + " to " + Endpoint() + " failed: " + ec.message());
    io_.stop();
  }

  asio::io_context& io_;
  Run& run_;
  tcp::endpoint endpoint_;
  int id_;
  beast::tcp_stream stream_;
  asio::steady_timer timer_;
  beast::flat_buffer buffer_;
  Batch batch_;
  http::request<http::string_body> request_;
  http::response<http::string_body> response_;
  Clock::time_point first_sent_;  // of the current batch, resends aside
  Clock::time_point last_used_;  // when the connection last finished a request (or opened)
};

double Percentile(std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  Run run;
  if (!ParseArgs(argc, argv, run.options)) return 2;
  const Options& o = run.options;

  run.in.open(o.events_file, std::ios::binary);
  if (!run.in) {
    std::fprintf(stderr, "vigil-http-load: cannot open %s\n", o.events_file.c_str());
    return 2;
  }
  static char file_buffer[1 << 20];
  run.in.rdbuf()->pubsetbuf(file_buffer, sizeof file_buffer);

  asio::io_context io;
  tcp::endpoint endpoint;
  {
    beast::error_code ec;
    tcp::resolver resolver(io);
    auto results = resolver.resolve(o.host, std::to_string(o.port), ec);
    if (ec || results.empty()) {
      std::fprintf(stderr, "vigil-http-load: cannot resolve %s: %s\n", o.host.c_str(),
                   ec.message().c_str());
      return 1;
    }
    endpoint = *results.begin();
  }

  std::vector<std::shared_ptr<Connection>> connections;
  for (uint64_t i = 0; i < o.connections; ++i) {
    connections.push_back(std::make_shared<Connection>(io, run, endpoint, static_cast<int>(i)));
    if (!connections.back()->Connect()) return 1;
  }

  char rate[64] = "unlimited";
  if (o.rate > 0) std::snprintf(rate, sizeof rate, "%g events/s", o.rate);
  char duration[64] = "until the end of the file";
  if (o.duration > 0) std::snprintf(duration, sizeof duration, "at most %g s", o.duration);
  std::printf("vigil-http-load: POST http://%s:%u/events, %s, batch %llu, %llu connections, "
              "rate %s, %s\n",
              o.host.c_str(), o.port, o.events_file.c_str(),
              static_cast<unsigned long long>(o.batch),
              static_cast<unsigned long long>(o.connections), rate, duration);
  std::fflush(stdout);

  run.start = Clock::now();
  run.last_answer = run.start;
  if (o.duration > 0) {
    run.deadline = run.start + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(o.duration));
  }
  for (auto& c : connections) c->Next();
  io.run();

  const double seconds = std::chrono::duration<double>(run.last_answer - run.start).count();
  std::sort(run.request_ms.begin(), run.request_ms.end());
  std::printf("events_sent %llu\n", static_cast<unsigned long long>(run.events_sent));
  std::printf("seconds %.3f\n", seconds);
  std::printf("events_per_s %.0f\n", seconds > 0 ? static_cast<double>(run.events_sent) / seconds : 0.0);
  std::printf("batches %llu\n", static_cast<unsigned long long>(run.batches));
  std::printf("non_202 %llu\n", static_cast<unsigned long long>(run.non_202));
  std::printf("overloaded %llu\n", static_cast<unsigned long long>(run.overloaded));
  std::printf("accepted %llu\n", static_cast<unsigned long long>(run.accepted));
  std::printf("rejected %llu\n", static_cast<unsigned long long>(run.rejected));
  std::printf("rejected_late %llu\n", static_cast<unsigned long long>(run.rejected_late));
  std::printf("request_ms_p50 %.2f\n", Percentile(run.request_ms, 0.50));
  std::printf("request_ms_p99 %.2f\n", Percentile(run.request_ms, 0.99));
  std::printf("request_ms_max %.2f\n", run.request_ms.empty() ? 0.0 : run.request_ms.back());
  std::printf("stopped_by %s\n", run.stopped_by.c_str());
  std::fflush(stdout);

  if (run.unparsed_answers > 0) {
    std::fprintf(stderr, "vigil-http-load: %llu 202 answers without an \"accepted\" count\n",
                 static_cast<unsigned long long>(run.unparsed_answers));
  }
  if (run.failed) return 1;
  if (run.events_sent == 0) {
    std::fprintf(stderr, "vigil-http-load: no events were sent (empty file?)\n");
    return 1;
  }
  return 0;
}
