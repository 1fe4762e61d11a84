// FindInvalidUtf8: RFC 3629's well-formed sequences pass; every other byte is found.
#include "common/utf8.h"

#include "common/json_text.h"

#include <doctest/doctest.h>

#include <string>

TEST_SUITE_BEGIN("common");

using vigil::FindInvalidUtf8;

TEST_CASE("UTF-8: valid text of one to four bytes per character passes") {
  CHECK(FindInvalidUtf8("") == std::string::npos);
  CHECK(FindInvalidUtf8("plain ascii") == std::string::npos);
  CHECK(FindInvalidUtf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x92\xb3 \xf4\x8f\xbf\xbf") == std::string::npos);
}

TEST_CASE("UTF-8: the offset of the first bad byte") {
  CHECK(FindInvalidUtf8("ab\xff") == 2);                 // never valid
  CHECK(FindInvalidUtf8("a\x80") == 1);                  // continuation without a lead
  CHECK(FindInvalidUtf8("a\xc3") == 1);                  // truncated
  CHECK(FindInvalidUtf8("\xc0\xaf") == 0);               // overlong '/'
  CHECK(FindInvalidUtf8("\xe0\x80\xaf") == 0);           // overlong, three bytes
  CHECK(FindInvalidUtf8("x\xed\xa0\x80") == 1);          // a surrogate
  CHECK(FindInvalidUtf8("\xf4\x90\x80\x80") == 0);       // above U+10FFFF
  CHECK(FindInvalidUtf8("\xe2\x82x") == 0);              // bad third byte
}

TEST_CASE("UTF-8: JSON strings write invalid bytes as U+FFFD and keep valid ones") {
  std::string out;
  vigil::AppendJsonString(&out, "a\xff" "b\xc3\xa9\xe2\x82");
  CHECK(out == "\"a\\ufffdb\xc3\xa9\\ufffd\\ufffd\"");
}
