// libFuzzer target: raw bytes sent to a real vigil server (embedded default: HTTP ingest,
// a data directory of its own) on a loopback port, as one client connection that then
// closes its sending side. The server must answer or close the connection within 10 s; a
// crash, a sanitizer report or a hang is a bug. The server lives for the whole run, so state
// left by earlier inputs (patterns, events) is part of what later inputs meet.

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "server/server.h"
#include "server/server_options.h"

namespace {

uint16_t StartServer() {
  char dir[] = "/tmp/vigil-http-fuzz-XXXXXX";
  if (mkdtemp(dir) == nullptr) abort();
  vigil::server::ServerOptions options;
  options.port = 0;
  options.data_dir = dir;
  options.alerts_file = std::string(dir) + "/alerts.ndjson";
  options.audit_log_file = std::string(dir) + "/audit.ndjson";
  options.workers = 1;
  auto* server = new vigil::server::Server(options);  // lives until the process exits
  std::vector<std::string> warnings;
  if (vigil::Status started = server->Start(&warnings); !started.ok()) {
    std::fprintf(stderr, "the server did not start: %s\n", started.message().c_str());
    abort();
  }
  std::thread([server] { server->Run(); }).detach();
  return server->port();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const uint16_t port = StartServer();
  namespace asio = boost::asio;
  asio::io_context io;
  asio::ip::tcp::socket socket(io);
  boost::system::error_code ec;
  // libFuzzer's timeout timer (SIGALRM) can interrupt a connect that blocks: a fresh socket
  // tries again.
  do {
    socket.close(ec);
    socket.connect({asio::ip::make_address("127.0.0.1"), port}, ec);
  } while (ec == asio::error::interrupted);
  if (ec) {
    std::fprintf(stderr, "cannot connect to the server: %s\n", ec.message().c_str());
    abort();
  }
  timeval timeout{10, 0};
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  asio::write(socket, asio::buffer(data, size), ec);  // the server may close early: fine
  socket.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  char reply[4096];
  while (true) {
    socket.read_some(asio::buffer(reply), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      std::fprintf(stderr, "the server neither answered nor closed the connection in 10 s\n");
      abort();
    }
    if (ec) break;  // end of stream or reset: the exchange is over
  }
  return 0;
}
