#pragma once
// Compact binary encoding for stored values: unsigned varints (LEB128), zig-zag signed varints
// and length-prefixed byte strings. ByteReader never reads past its input: a truncated or
// corrupt value makes it fail (ok() false) instead of returning garbage, so every decoder can
// read on and check once at the end.

#include <cstdint>
#include <string>
#include <string_view>

namespace vigil {

inline void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

inline void PutSignedVarint(std::string* out, int64_t v) {
  PutVarint(out, (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63));
}

inline void PutBytes(std::string* out, std::string_view bytes) {
  PutVarint(out, bytes.size());
  out->append(bytes);
}

class ByteReader {
 public:
  explicit ByteReader(std::string_view in) : in_(in) {}

  uint64_t Varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= in_.size()) return Fail();
      const auto byte = static_cast<uint8_t>(in_[pos_++]);
      v |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if (byte < 0x80) return v;
    }
    return Fail();
  }

  int64_t SignedVarint() {
    const uint64_t v = Varint();
    return static_cast<int64_t>((v >> 1) ^ (~(v & 1) + 1));
  }

  // A varint that must be below `limit` (a count or an index into what was read before).
  uint64_t Below(uint64_t limit) {
    const uint64_t v = Varint();
    return v < limit ? v : Fail();
  }

  std::string_view Bytes() {
    const uint64_t n = Varint();
    if (!ok_ || n > in_.size() - pos_) {
      Fail();
      return {};
    }
    const std::string_view bytes = in_.substr(pos_, n);
    pos_ += n;
    return bytes;
  }

  // Bytes not read yet.
  size_t remaining() const { return in_.size() - pos_; }
  // False once anything read was truncated or out of range.
  bool ok() const { return ok_; }
  // True when everything was read and nothing is left over.
  bool done() const { return ok_ && pos_ == in_.size(); }

 private:
  uint64_t Fail() {
    ok_ = false;
    pos_ = in_.size();
    return 0;
  }

  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace vigil
