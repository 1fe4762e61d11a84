#pragma once
// Loading pattern files for the command line: files or directories of .yaml/.yml/.json,
// parsed, validated and compiled; every error as "file:line:column: message".

#include <memory>
#include <string>
#include <vector>

#include "nfa/compiler.h"
#include "nfa/field_schema.h"

namespace vigil::app {

struct LoadedPatterns {
  std::vector<std::shared_ptr<const nfa::Nfa>> nfas;
  std::vector<std::string> errors;
};

// Directories contribute their pattern files in name order. Pattern ids must be unique over
// all files.
LoadedPatterns LoadPatternFiles(const std::vector<std::string>& paths, nfa::FieldSchema* schema);

}  // namespace vigil::app
