#pragma once
// Reading files and listing directories, with errors as Status values.

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace vigil {

// Regular files in `dir` whose extension (".yaml", ...) is one of `extensions`, as paths
// sorted by name. Empty when `dir` cannot be read.
std::vector<std::string> FilesIn(const std::string& dir, std::span<const std::string_view> extensions);

// The whole content of `path`. Errors: kIoError naming the path and the reason.
Result<std::string> ReadFile(const std::string& path);

}  // namespace vigil
