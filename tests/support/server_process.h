#pragma once
// ServerProcess: the real `vigil serve` binary on a free loopback port with its own data
// directory, and a small blocking HTTP client for it (Beast). For integration tests.

#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace vigil::testing {

// Blocking reads on `socket` give up after 10 s, so a server that stops answering fails the
// test instead of hanging it.
template <typename Socket>
void LimitReadTime(Socket& socket) {
  timeval timeout{10, 0};
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
}

struct HttpResult {
  unsigned status = 0;
  std::string body;
  std::string content_type;
};

class ServerProcess {
 public:
  // Starts `vigil serve --listen 127.0.0.1:0 --data-dir DATA_DIR EXTRA...` and waits for
  // the line that names its port.
  ServerProcess(const std::string& data_dir, const std::vector<std::string>& extra = {}) {
    int out[2];
    if (::pipe(out) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      ::close(out[0]);
      ::close(out[1]);
      std::vector<std::string> args = {Binary(), "serve", "--listen", "127.0.0.1:0", "--data-dir",
                                       data_dir};
      args.insert(args.end(), extra.begin(), extra.end());
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    std::FILE* stream = ::fdopen(out[0], "r");
    char line[256];
    if (stream && std::fgets(line, sizeof line, stream)) {
      const std::string text(line);
      const size_t colon = text.rfind(':');
      if (colon != std::string::npos) port_ = static_cast<unsigned short>(std::stoi(text.substr(colon + 1)));
    }
    if (stream) std::fclose(stream);
  }

  ~ServerProcess() {
    if (pid_ > 0 && !stopped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  bool started() const { return port_ != 0; }
  pid_t pid() const { return pid_; }

  // SIGKILL (a crash: nothing is flushed), then waits for the process to be gone.
  void Kill() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    stopped_ = true;
  }
  unsigned short port() const { return port_; }

  // SIGTERM, then the exit status.
  int Stop() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    stopped_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  bool Alive() const { return ::kill(pid_, 0) == 0 && ::waitpid(pid_, nullptr, WNOHANG) == 0; }

  // An unlabelled sample of /metrics (as an integer), if it is there.
  std::optional<uint64_t> Metric(const std::string& name) const {
    const std::string metrics = Request(boost::beast::http::verb::get, "/metrics").body;
    const size_t at = metrics.find("\n" + name + " ");
    if (at == std::string::npos) return std::nullopt;
    return std::stoull(metrics.substr(at + name.size() + 2));
  }

  HttpResult Request(boost::beast::http::verb verb, const std::string& target,
                     const std::string& body = "", const std::string& content_type = "",
                     const std::string& authorization = "") const {
    namespace http = boost::beast::http;
    boost::asio::io_context io;
    boost::asio::ip::tcp::resolver resolver(io);
    boost::beast::tcp_stream stream(io);
    stream.connect(resolver.resolve("127.0.0.1", std::to_string(port_)));
    LimitReadTime(stream.socket());
    http::request<http::string_body> req(verb, target, 11);
    req.set(http::field::host, "127.0.0.1");
    if (!content_type.empty()) req.set(http::field::content_type, content_type);
    if (!authorization.empty()) req.set(http::field::authorization, authorization);
    req.body() = body;
    req.prepare_payload();
    http::write(stream, req);
    boost::beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 << 20);
    http::read(stream, buffer, parser);
    res = parser.release();
    boost::beast::error_code ignored;
    stream.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
    return {res.result_int(), res.body(), std::string(res[http::field::content_type])};
  }

  // A GET of a text/event-stream route: the status, then the stream's bytes as they come.
  class Stream {
   public:
    Stream(unsigned short port, const std::string& target) : socket_(io_) {
      namespace http = boost::beast::http;
      socket_.connect({boost::asio::ip::make_address("127.0.0.1"), port});
      LimitReadTime(socket_);
      http::request<http::empty_body> req(http::verb::get, target, 11);
      req.set(http::field::host, "127.0.0.1");
      http::write(socket_, req);
      http::response_parser<http::empty_body> parser;
      http::read_header(socket_, buffer_, parser);
      status_ = parser.get().result_int();
      content_type_ = std::string(parser.get()[http::field::content_type]);
    }
    unsigned status() const { return status_; }
    const std::string& content_type() const { return content_type_; }
    // Reads until `needle` has arrived (or the stream ends); returns all bytes read so far.
    std::string ReadUntil(const std::string& needle) {
      std::string seen(static_cast<const char*>(buffer_.data().data()), buffer_.size());
      buffer_.consume(buffer_.size());
      char buf[4096];
      boost::beast::error_code ec;
      while (seen.find(needle) == std::string::npos) {
        const size_t n = socket_.read_some(boost::asio::buffer(buf), ec);
        if (ec) break;
        seen.append(buf, n);
      }
      return seen;
    }

   private:
    boost::asio::io_context io_;
    boost::asio::ip::tcp::socket socket_;
    boost::beast::flat_buffer buffer_;
    unsigned status_ = 0;
    std::string content_type_;
  };

  // Sends raw bytes and returns whatever the server answers before closing.
  std::string Raw(const std::string& bytes) const {
    boost::asio::io_context io;
    boost::asio::ip::tcp::socket socket(io);
    socket.connect({boost::asio::ip::make_address("127.0.0.1"), port_});
    LimitReadTime(socket);
    boost::asio::write(socket, boost::asio::buffer(bytes));
    std::string out;
    boost::beast::error_code ec;
    char buf[4096];
    while (true) {
      const size_t n = socket.read_some(boost::asio::buffer(buf), ec);
      if (ec) break;
      out.append(buf, n);
    }
    return out;
  }

 private:
  static std::string Binary() { return std::string(VIGIL_BINARY_DIR) + "/src/app/vigil"; }

  pid_t pid_ = -1;
  unsigned short port_ = 0;
  bool stopped_ = false;
};

}  // namespace vigil::testing
