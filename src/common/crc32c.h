#pragma once
// CRC-32C (Castagnoli), the checksum of vigil's own files (input log records, checkpoint
// meta). Computed with the CPU's CRC32 instruction where it has one (x86-64 with SSE 4.2:
// over 10 GB/s), else from a table; both give the same values.

#include <cstdint>
#include <string_view>

namespace vigil {

// The CRC-32C of `bytes`, continuing from `crc` (the CRC of the bytes before them, 0 at the
// start).
uint32_t Crc32c(std::string_view bytes, uint32_t crc = 0);

}  // namespace vigil
