// The building blocks of stored values: varints and byte strings that refuse truncation, and
// the checksum of vigil's files.
#include <doctest/doctest.h>

#include <string>

#include "common/byte_codec.h"
#include "common/crc32c.h"

TEST_SUITE_BEGIN("common");

TEST_CASE("Byte codec: every value reads back, and a truncated input fails instead") {
  std::string out;
  const uint64_t unsigned_values[] = {0, 1, 127, 128, 300, UINT32_MAX, UINT64_MAX};
  const int64_t signed_values[] = {0, -1, 1, -64, 64, INT64_MIN, INT64_MAX};
  for (const uint64_t v : unsigned_values) vigil::PutVarint(&out, v);
  for (const int64_t v : signed_values) vigil::PutSignedVarint(&out, v);
  vigil::PutBytes(&out, "text");
  vigil::ByteReader in(out);
  for (const uint64_t v : unsigned_values) CHECK(in.Varint() == v);
  for (const int64_t v : signed_values) CHECK(in.SignedVarint() == v);
  CHECK(in.Bytes() == "text");
  CHECK(in.done());
  for (size_t size = 0; size < out.size(); ++size) {
    vigil::ByteReader cut(std::string_view(out).substr(0, size));
    for (size_t i = 0; i < std::size(unsigned_values) + std::size(signed_values); ++i) cut.Varint();
    cut.Bytes();
    CHECK_FALSE(cut.done());
  }
  vigil::ByteReader bounded(out);
  CHECK(bounded.Below(1) == 0);  // 0 < 1
  CHECK(bounded.Below(1) == 0);  // 1 is not below 1: refused
  CHECK_FALSE(bounded.ok());
}

TEST_CASE("CRC-32C: the standard check values, in one piece and continued") {
  CHECK(vigil::Crc32c("123456789") == 0xe3069283u);
  CHECK(vigil::Crc32c("") == 0u);
  CHECK(vigil::Crc32c(std::string(32, '\0')) == 0x8a9136aau);
  CHECK(vigil::Crc32c("456789", vigil::Crc32c("123")) == 0xe3069283u);
  const std::string long_text(1000, 'x');
  CHECK(vigil::Crc32c(std::string_view(long_text).substr(500), vigil::Crc32c(std::string_view(long_text).substr(0, 500))) ==
        vigil::Crc32c(long_text));
}
