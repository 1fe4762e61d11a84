#include "app/pattern_loader.h"

#include "common/files.h"

#include <filesystem>
#include <map>

namespace vigil::app {
namespace fs = std::filesystem;

LoadedPatterns LoadPatternFiles(const std::vector<std::string>& paths, nfa::FieldSchema* schema) {
  LoadedPatterns out;
  std::vector<std::string> files;
  for (const std::string& path : paths) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      const std::vector<std::string> found = FilesIn(path, nfa::kPatternFileExtensions);
      if (found.empty()) out.errors.push_back(path + ": no .yaml, .yml or .json pattern files");
      files.insert(files.end(), found.begin(), found.end());
    } else {
      files.push_back(path);
    }
  }
  std::map<std::string, std::string> first_file_of_id;
  for (const std::string& file : files) {
    Result<std::string> text = ReadFile(file);
    if (!text.ok()) {
      out.errors.push_back(text.status().message());
      continue;
    }
    nfa::ParsedPatterns parsed = nfa::ParsePatterns(*text, file, schema);
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
