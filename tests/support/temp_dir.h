#pragma once
// TempDir: a fresh directory under the system's temporary directory, removed with its
// contents when the object goes.

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace vigil::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "vigil-test-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string path() const { return path_.string(); }

  // Writes `content` to the file `name` in the directory; returns its path.
  std::string Write(const std::string& name, const std::string& content) const {
    const std::filesystem::path p = path_ / name;
    std::ofstream(p) << content;
    return p.string();
  }

 private:
  std::filesystem::path path_;
};

}  // namespace vigil::testing
