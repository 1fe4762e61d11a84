#include "app/pattern_loader.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace vigil::app {
namespace fs = std::filesystem;

namespace {

bool IsPatternFile(const fs::path& p) {
  const std::string ext = p.extension().string();
  return ext == ".yaml" || ext == ".yml" || ext == ".json";
}

}  // namespace

LoadedPatterns LoadPatternFiles(const std::vector<std::string>& paths, nfa::FieldSchema* schema) {
  LoadedPatterns out;
  std::vector<std::string> files;
  for (const std::string& path : paths) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      std::vector<std::string> found;
      for (const auto& entry : fs::directory_iterator(path, ec)) {
        if (entry.is_regular_file() && IsPatternFile(entry.path())) found.push_back(entry.path().string());
      }
      std::sort(found.begin(), found.end());
      if (found.empty()) out.errors.push_back(path + ": no .yaml, .yml or .json pattern files");
      files.insert(files.end(), found.begin(), found.end());
    } else {
      files.push_back(path);
    }
  }
  std::map<std::string, std::string> first_file_of_id;
  for (const std::string& file : files) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      out.errors.push_back(file + ": cannot open: " + std::strerror(errno));
      continue;
    }
    std::stringstream text;
    text << in.rdbuf();
    nfa::ParsedPatterns parsed = nfa::ParsePatterns(text.str(), file, schema);
    for (const nfa::PatternError& e : parsed.errors) out.errors.push_back(e.ToString());
    for (nfa::Pattern& p : parsed.patterns) {
      auto [it, inserted] = first_file_of_id.emplace(p.id, file);
      if (!inserted) {
        out.errors.push_back(file + ": duplicate pattern id '" + p.id + "' (also in " + it->second + ")");
        continue;
      }
      auto compiled = nfa::NfaCompiler::Compile(std::make_shared<const nfa::Pattern>(std::move(p)));
      if (!compiled.ok()) {
        out.errors.push_back(file + ": " + compiled.status().message());
        continue;
      }
      out.nfas.push_back(std::move(compiled).value());
    }
  }
  return out;
}

}  // namespace vigil::app
