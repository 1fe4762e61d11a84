// The alerts file's rotation: whatever a kill left half-renamed, the rotated files are
// numbered 1..N again at the next start, oldest highest, and none is lost.
#include "server/alert_log.h"

#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "support/temp_dir.h"

TEST_SUITE_BEGIN("server");

namespace {

namespace fs = std::filesystem;
using vigil::testing::TempDir;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

TEST_CASE("AlertLog: a rotation cut short by a kill leaves no gap after the next start") {
  TempDir dir;
  const std::string base = dir.path() + "/alerts.ndjson";
  // The kill came after FILE.2 -> FILE.3 and before FILE.1 -> FILE.2.
  dir.Write("alerts.ndjson", "");
  dir.Write("alerts.ndjson.1", "newer\n");
  dir.Write("alerts.ndjson.3", "older\n");
  dir.Write("alerts.ndjson.4", "oldest\n");
  dir.Write("alerts.ndjson.x", "not a rotated file\n");
  boost::asio::io_context io;
  vigil::server::AlertLog log(io, 10, 1);
  REQUIRE(log.Open(base, dir.path() + "/late.ndjson", 1024, 10).ok());
  CHECK(ReadAll(base + ".1") == "newer\n");
  CHECK(ReadAll(base + ".2") == "older\n");
  CHECK(ReadAll(base + ".3") == "oldest\n");
  CHECK_FALSE(fs::exists(base + ".4"));
  CHECK(fs::exists(base + ".x"));
}
