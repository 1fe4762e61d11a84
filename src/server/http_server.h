#pragma once
// HttpServer: HTTP/1.1 on Boost.Beast and Boost.Asio, for the REST API.
//
// Runs on the io_context it is given (vigil runs that context on one thread, so handlers
// never race). Each connection reads one request at a time (keep-alive supported) with limits
// on header and body size; a body over the limit is answered 413 and the connection closed,
// a malformed request (smuggling shapes included: Content-Length with Transfer-Encoding, two
// Content-Lengths) 400. A request must arrive whole within the request timeout. Connections
// are limited in total (503) and per client address (429). The handler sees a complete
// request and returns the response.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/status.h"

namespace vigil::server {

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;

// A response with a JSON body (and the request's keep-alive and version).
HttpResponse JsonResponse(const HttpRequest& request, boost::beast::http::status status,
                          std::string body);
// {"error":{"code":CODE,"message":MESSAGE}} with `status`.
HttpResponse ErrorResponse(const HttpRequest& request, boost::beast::http::status status,
                           std::string_view code, std::string_view message);

// A server-sent-events stream to one client, open until the client goes away. Send() queues
// text and returns at once; a client that falls too far behind is disconnected rather than
// buffered without bound.
class EventStream {
 public:
  virtual ~EventStream() = default;
  virtual void Send(std::string text) = 0;
  virtual bool open() const = 0;
};

class HttpServer {
 public:
  // Answers a request from `client` (the peer's IP address).
  using Handler = std::function<HttpResponse(const HttpRequest&, std::string_view client)>;
  // A response whose Content-Type is text/event-stream turns its connection into an
  // EventStream, handed to this callback.
  using StreamHandler = std::function<void(std::shared_ptr<EventStream>)>;

  struct Limits {
    size_t max_body_bytes = size_t{16} << 20;
    size_t max_header_bytes = 16 << 10;
    size_t max_stream_backlog_bytes = size_t{8} << 20;  // per EventStream
    size_t max_connections = 1024;  // beyond it, a new connection gets 503 and is closed
    // Open connections from one client address; beyond it a new one gets 429 and is closed,
    // so one client cannot take every connection.
    size_t max_connections_per_client = 64;
    // Time a client has to send one whole request (headers and body), and to start the next
    // one on a kept-alive connection; then the connection is closed. Bounds slow senders
    // (slowloris) and idle connections.
    std::chrono::milliseconds request_timeout{30000};
  };

  HttpServer(boost::asio::io_context& io, Limits limits, Handler handler,
             StreamHandler on_stream);
  ~HttpServer();

  // Serves HTTPS instead of HTTP (TLS 1.2 or later), with a PEM certificate chain and key.
  // Call before Listen(). Errors: kInvalidArgument when a file cannot be loaded.
  Status EnableTls(const std::string& cert_file, const std::string& key_file);
  // Binds and starts accepting. Errors: kUnavailable when the address cannot be bound.
  Status Listen(const std::string& address, uint16_t port);
  // The bound port (useful after listening on port 0).
  uint16_t port() const;
  // Stops accepting new connections; open ones finish their current request.
  void StopAccepting();

 private:
  template <class Stream>
  class Session;
  void Accept();

  boost::asio::io_context& io_;
  Limits limits_;
  Handler handler_;
  StreamHandler on_stream_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::shared_ptr<boost::asio::ssl::context> tls_;  // null: plain HTTP
  boost::asio::steady_timer accept_retry_;          // after a failed accept
  struct Connections {
    size_t total = 0;
    std::unordered_map<std::string, size_t> by_client;  // remote address -> open connections
  };
  // Shared with the sessions, which may outlive the server by a little.
  std::shared_ptr<Connections> connections_ = std::make_shared<Connections>();
};

}  // namespace vigil::server
