#include "server/http_server.h"

#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>

#include <deque>

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

// One connection: read a request, answer it, repeat while the client keeps it alive.
class HttpServer::Session : public std::enable_shared_from_this<Session>, public EventStream {
 public:
  Session(tcp::socket socket, const Limits& limits, const Handler& handler,
          const StreamHandler& on_stream, std::shared_ptr<size_t> connections)
      : stream_(std::move(socket)),
        limits_(limits),
        handler_(handler),
        on_stream_(on_stream),
        connections_(std::move(connections)) {
    ++*connections_;
  }
  ~Session() override { --*connections_; }

  void Start() {
    if (*connections_ > limits_.max_connections) {
      HttpRequest bare;
      bare.version(11);
      bare.keep_alive(false);
      Write(ErrorResponse(bare, http::status::service_unavailable, "unavailable",
                          "too many connections"),
            /*close=*/true);
      return;
    }
    Read();
  }

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
    stream_.expires_never();
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

  void Read() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(limits_.max_header_bytes));
    parser_->body_limit(limits_.max_body_bytes);
    stream_.expires_after(std::chrono::seconds(30));
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::connection_reset) {
      Close();
      return;
    }
    if (ec) {
      // A request we cannot read gets one clear answer, then the connection closes.
      HttpRequest bare;
      bare.version(11);
      bare.keep_alive(false);
      HttpResponse answer =
          ec == http::error::body_limit
              ? ErrorResponse(bare, http::status::payload_too_large, "too_large",
                              "request body too large")
          : ec == http::error::header_limit
              ? ErrorResponse(bare, http::status::request_header_fields_too_large, "too_large",
                              "request headers too large")
              : ErrorResponse(bare, http::status::bad_request, "bad_request",
                              "malformed HTTP request: " + ec.message());
      Write(std::move(answer), /*close=*/true);
      return;
    }
    HttpRequest request = parser_->release();
    HttpResponse response = handler_(request);
    if (response[http::field::content_type] == "text/event-stream") {
      StartStream(std::move(response));
      return;
    }
    const bool close = !response.keep_alive();
    Write(std::move(response), close);
  }

  void Write(HttpResponse response, bool close) {
    auto shared = std::make_shared<HttpResponse>(std::move(response));
    http::async_write(stream_, *shared,
                      [self = shared_from_this(), shared, close](beast::error_code ec, size_t) {
                        if (ec || close) {
                          self->Close();
                        } else {
                          self->Read();
                        }
                      });
  }

  // Ends an HTTP exchange: our side is done sending; the client sees the response, then EOF.
  void Close() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  // Ends a stream at once (client gone, or too slow).
  void Abort() {
    Close();
    beast::error_code ignored;
    stream_.socket().close(ignored);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  const Limits& limits_;
  const Handler& handler_;
  const StreamHandler& on_stream_;
  std::shared_ptr<size_t> connections_;
  bool streaming_ = false;
  bool closed_ = false;
  std::deque<std::string> backlog_;
  size_t backlog_bytes_ = 0;
  char discard_[256];
};

HttpServer::HttpServer(asio::io_context& io, Limits limits, Handler handler, StreamHandler on_stream)
    : io_(io),
      limits_(limits),
      handler_(std::move(handler)),
      on_stream_(std::move(on_stream)),
      acceptor_(io) {}

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
}

void HttpServer::Accept() {
  acceptor_.async_accept(io_, [this](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;  // StopAccepting()
    if (!ec) {
      std::make_shared<Session>(std::move(socket), limits_, handler_, on_stream_, connections_)->Start();
    }
    Accept();
  });
}

}  // namespace vigil::server
