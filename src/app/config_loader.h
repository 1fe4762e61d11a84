#pragma once
// The configuration of `vigil serve`: a YAML file, VIGIL_* environment variables and
// command-line flags, merged into server::ServerOptions. This is the only place that reads
// YAML configuration; yaml-cpp's exceptions are caught here and become Status values.
//
// Precedence, highest first: flags > environment > file > the defaults in ServerOptions.
// Every setting has one name in each source; its environment variable is VIGIL_ and the
// YAML key in capitals with '.' as '_' (alerts.recent: VIGIL_ALERTS_RECENT).
// config/vigil.example.yaml documents them all.
//
//   YAML key                             flag
//   server.listen                        --listen
//   server.max_body_bytes                --max-body-bytes
//   server.max_pattern_bytes             --max-pattern-bytes
//   data_dir                             --data-dir
//   patterns_dir                         --patterns-dir
//   alerts.file                          --alerts-file
//   alerts.recent                        --recent-alerts
//   events.time_field                    --time-field
//   events.max_out_of_orderness          --max-out-of-orderness
//   events.max_partial_matches_per_key   --max-partial-matches
//
// Unknown YAML keys and unknown flags are errors; environment variables other than the ones
// above (and VIGIL_CONFIG) are ignored, since the environment is shared with other programs.

#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "server/server_options.h"

namespace vigil::app {

// Builds the options of `vigil serve`.
//
// The config file is, highest precedence first: the `--config FILE` flag in `args`, the
// VIGIL_CONFIG variable in `env`, then `default_config_path`. An empty path means "no file",
// so the caller passes "" unless it has a default location.
//
// `env` maps variable names to values (see SnapshotVigilEnvironment); `args` are the
// arguments after `serve`. Flags are `--name VALUE` or `--name=VALUE`; when a flag is given
// twice the last one wins. `--help` is not handled here: the caller checks HasHelpFlag first
// and prints ServeUsage().
//
// After precedence is applied, an empty alerts_file becomes `<data_dir>/alerts.ndjson`.
//
// Errors name their source and key, one per line when there are several:
//   "cfg.yaml:3:11: server.listen: port must be 0..65535 (got '99999')"
//   "VIGIL_ALERTS_RECENT: must be a positive integer (got 'many')"
//   "--max-body-bytes: must be at least 1024 (got '10')"
// Returns NotFound when the config file does not exist, IoError when it cannot be read, and
// InvalidArgument for YAML syntax errors, unknown keys or flags, and out-of-range values.
Result<server::ServerOptions> LoadServerOptions(const std::string& default_config_path,
                                                const std::map<std::string, std::string>& env,
                                                const std::vector<std::string>& args);

// The process environment's variables whose names begin with VIGIL_, as a map for
// LoadServerOptions. Reading the environment only here keeps the loader testable.
std::map<std::string, std::string> SnapshotVigilEnvironment();

// True when `args` holds `--help` or `-h`.
bool HasHelpFlag(const std::vector<std::string>& args);

// The help text of `vigil serve`: every flag, its environment variable and default.
std::string ServeUsage();

}  // namespace vigil::app
