#include "server/http_server.h"

#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>

#include <deque>
#include <type_traits>

#include "common/json_text.h"

namespace vigil::server {

namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

HttpResponse JsonResponse(const HttpRequest& request, http::status status, std::string body) {
  HttpResponse response(status, request.version());
  response.set(http::field::content_type, "application/json");
  response.keep_alive(request.keep_alive());
  response.body() = std::move(body);
  response.prepare_payload();
  return response;
}

HttpResponse ErrorResponse(const HttpRequest& request, http::status status, std::string_view code,
                           std::string_view message) {
  std::string body = "{\"error\":{\"code\":";
  AppendJsonString(&body, code);
  body += ",\"message\":";
  AppendJsonString(&body, message);
  body += "}}";
  return JsonResponse(request, status, std::move(body));
}

namespace {

using TlsStream = beast::ssl_stream<beast::tcp_stream>;

}  // namespace

// One connection: read a request, answer it, repeat while the client keeps it alive. `Stream`
// is beast::tcp_stream (plain HTTP) or TlsStream (HTTPS: a handshake comes first).
template <class Stream>
class HttpServer::Session : public std::enable_shared_from_this<Session<Stream>>, public EventStream {
 public:
  Session(Stream stream, const Limits& limits, const Handler& handler,
          const StreamHandler& on_stream, std::shared_ptr<Connections> connections)
      : stream_(std::move(stream)),
        limits_(limits),
        handler_(handler),
        on_stream_(on_stream),
        connections_(std::move(connections)) {
    beast::error_code ec;
    client_ = socket().remote_endpoint(ec).address().to_string();
    ++connections_->total;
    ++connections_->by_client[client_];
  }
  ~Session() override {
    --connections_->total;
    if (--connections_->by_client[client_] == 0) connections_->by_client.erase(client_);
  }

  void Start() {
    const bool over_total = connections_->total > limits_.max_connections;
    const bool over_client = connections_->by_client[client_] > limits_.max_connections_per_client;
    if constexpr (std::is_same_v<Stream, TlsStream>) {
      // Limits apply before the handshake, which a client could otherwise stall to hold a
      // connection; without a handshake there is no HTTP to answer with, so it is closed.
      if (over_total || over_client) return Abort();
      // A client that never finishes its handshake is cut off like a slow request.
      lowest().expires_after(limits_.request_timeout);
      stream_.async_handshake(asio::ssl::stream_base::server,
                              [self = this->shared_from_this()](beast::error_code ec) {
                                if (ec) return self->Abort();
                                self->Read();
                              });
    } else if (over_total) {
      Refuse(http::status::service_unavailable, "unavailable", "too many connections", /*retry_later=*/true);
    } else if (over_client) {
      Refuse(http::status::too_many_requests, "too_many_connections", "too many connections from this address",
             /*retry_later=*/true);
    } else {
      Read();
    }
  }

 private:
  using std::enable_shared_from_this<Session<Stream>>::shared_from_this;

  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }
  tcp::socket& socket() { return lowest().socket(); }

 public:
  void Send(std::string text) override {
    if (!streaming_ || closed_) return;
    backlog_bytes_ += text.size();
    if (backlog_bytes_ > limits_.max_stream_backlog_bytes) {
      Abort();  // too slow to keep up: disconnect rather than buffer without bound
      return;
    }
    backlog_.push_back(std::move(text));
    if (backlog_.size() == 1) WriteChunk();
  }

  bool open() const override { return streaming_ && !closed_; }

 private:
  // Streaming: the header once (chunked, no end), then each Send() as a chunk, while a read
  // watches for the client going away.
  void StartStream(HttpResponse response) {
    streaming_ = true;
    lowest().expires_never();
    auto header = std::make_shared<http::response<http::empty_body>>(response.result(), response.version());
    for (const auto& field : response) header->set(field.name_string(), field.value());
    header->chunked(true);
    auto serializer = std::make_shared<http::response_serializer<http::empty_body>>(*header);
    http::async_write_header(stream_, *serializer,
                             [self = shared_from_this(), header, serializer](beast::error_code ec, size_t) {
                               if (ec) return self->Abort();
                               self->WatchForClose();
                               self->on_stream_(self);
                             });
  }

  void WatchForClose() {
    stream_.async_read_some(asio::buffer(discard_),
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              if (ec) return self->Abort();
                              self->WatchForClose();
                            });
  }

  void WriteChunk() {
    asio::async_write(stream_, http::make_chunk(asio::buffer(backlog_.front())),
                      [self = shared_from_this()](beast::error_code ec, size_t) {
                        if (ec) return self->Abort();
                        self->backlog_bytes_ -= self->backlog_.front().size();
                        self->backlog_.pop_front();
                        if (!self->backlog_.empty()) self->WriteChunk();
                      });
  }

  // Answers once without reading a request (or the rest of one), then closes.
  void Refuse(http::status status, std::string_view code, std::string_view message,
              bool retry_later = false) {
    HttpRequest bare;
    bare.version(11);
    bare.keep_alive(false);
    HttpResponse answer = ErrorResponse(bare, status, code, message);
    if (retry_later) answer.set(http::field::retry_after, "1");
    Write(std::move(answer), /*close=*/true);
  }

  void Read() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(limits_.max_header_bytes));
    parser_->body_limit(limits_.max_body_bytes);
    lowest().expires_after(limits_.request_timeout);
    http::async_read_header(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
      self->OnHeader(ec);
    });
  }

  void OnHeader(beast::error_code ec) {
    if (ec) return OnRead(ec);
    // RFC 9112 6.3: with a Transfer-Encoding whose last coding is not chunked the body's end
    // is unknowable; a front end that guessed differently would let a request be smuggled
    // behind this one. (Beast would read such a body as empty.)
    if (parser_->get().count(http::field::transfer_encoding) != 0 && !parser_->chunked()) {
      return Refuse(http::status::bad_request, "bad_request",
                    "malformed HTTP request: Transfer-Encoding must end with chunked");
    }
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::connection_reset) {
      Close();
      return;
    }
    // A request we cannot read gets one clear answer, then the connection closes.
    if (ec == http::error::body_limit) {
      return Refuse(http::status::payload_too_large, "too_large", "request body too large");
    }
    if (ec == http::error::header_limit) {
      return Refuse(http::status::request_header_fields_too_large, "too_large", "request headers too large");
    }
    if (ec) return Refuse(http::status::bad_request, "bad_request", "malformed HTTP request: " + ec.message());
    HttpRequest request = parser_->release();
    HttpResponse response = handler_(request, client_);
    if (response[http::field::content_type] == "text/event-stream") {
      StartStream(std::move(response));
      return;
    }
    const bool close = !response.keep_alive();
    Write(std::move(response), close);
  }

  void Write(HttpResponse response, bool close) {
    // The answer gets time of its own, not what the request's reading left of it.
    lowest().expires_after(limits_.request_timeout);
    auto shared = std::make_shared<HttpResponse>(std::move(response));
    http::async_write(stream_, *shared,
                      [self = shared_from_this(), shared, close](beast::error_code ec, size_t) {
                        if (ec) {
                          self->Abort();
                        } else if (close) {
                          self->Close();
                          self->Linger();
                        } else {
                          self->Read();
                        }
                      });
  }

  // Ends an HTTP exchange: our side is done sending; the client sees the response, then EOF.
  // (With TLS the TCP connection ends without a close_notify: a response carries its length
  // or its last chunk, so truncation is still detected.)
  void Close() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ignored;
    socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  // After Close(): reads and drops what the client still sends (the rest of a refused body)
  // until it closes too, for at most two seconds and 1 MiB. Closing with unread input would
  // reset the connection, and the client could lose the answer.
  void Linger() {
    lowest().expires_after(std::chrono::seconds(2));
    stream_.async_read_some(asio::buffer(discard_), [self = shared_from_this()](beast::error_code ec, size_t n) {
      self->lingered_bytes_ += n;
      if (ec || self->lingered_bytes_ > (size_t{1} << 20)) return self->Abort();
      self->Linger();
    });
  }

  // Ends a stream at once (client gone, or too slow).
  void Abort() {
    Close();
    beast::error_code ignored;
    socket().close(ignored);
  }

  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  const Limits& limits_;
  const Handler& handler_;
  const StreamHandler& on_stream_;
  std::shared_ptr<Connections> connections_;
  std::string client_;  // remote address
  bool streaming_ = false;
  bool closed_ = false;
  std::deque<std::string> backlog_;
  size_t backlog_bytes_ = 0;
  size_t lingered_bytes_ = 0;
  char discard_[256];
};

HttpServer::HttpServer(asio::io_context& io, Limits limits, Handler handler, StreamHandler on_stream)
    : io_(io),
      limits_(limits),
      handler_(std::move(handler)),
      on_stream_(std::move(on_stream)),
      acceptor_(io),
      accept_retry_(io) {}

HttpServer::~HttpServer() = default;

Status HttpServer::Listen(const std::string& address, uint16_t port) {
  beast::error_code ec;
  const auto ip = asio::ip::make_address(address, ec);
  if (ec) return Status::InvalidArgument("bad listen address '" + address + "': " + ec.message());
  const tcp::endpoint endpoint(ip, port);
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status::Unavailable("cannot listen on " + address + ":" + std::to_string(port) + ": " +
                               ec.message());
  }
  Accept();
  return Status::Ok();
}

uint16_t HttpServer::port() const {
  beast::error_code ec;
  return acceptor_.local_endpoint(ec).port();
}

void HttpServer::StopAccepting() {
  beast::error_code ignored;
  acceptor_.close(ignored);
  accept_retry_.cancel();
}

Status HttpServer::EnableTls(const std::string& cert_file, const std::string& key_file) {
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1);
  beast::error_code ec;
  context->use_certificate_chain_file(cert_file, ec);
  if (ec) return Status::InvalidArgument("cannot load TLS certificate " + cert_file + ": " + ec.message());
  context->use_private_key_file(key_file, asio::ssl::context::pem, ec);
  if (ec) return Status::InvalidArgument("cannot load TLS key " + key_file + ": " + ec.message());
  tls_ = std::move(context);
  return Status::Ok();
}

void HttpServer::Accept() {
  acceptor_.async_accept(io_, [this](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;  // StopAccepting()
    if (!ec && tls_) {
      std::make_shared<Session<TlsStream>>(TlsStream(std::move(socket), *tls_), limits_, handler_,
                                           on_stream_, connections_)
          ->Start();
    } else if (!ec) {
      std::make_shared<Session<beast::tcp_stream>>(beast::tcp_stream(std::move(socket)), limits_,
                                                   handler_, on_stream_, connections_)
          ->Start();
    } else {
      // Out of file descriptors, say: accepting again at once would spin. Open connections
      // finishing is what helps, so wait a little for them.
      accept_retry_.expires_after(std::chrono::milliseconds(100));
      accept_retry_.async_wait([this](beast::error_code wait_ec) {
        if (!wait_ec) Accept();
      });
      return;
    }
    Accept();
  });
}

}  // namespace vigil::server
