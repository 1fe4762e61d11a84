# Shared by the load-test scripts (sourced): finds the build directory and the vigil binary.
# Expects ROOT (the repository), build (the --build argument) and die() to be set.

# A path as given if absolute or present relative to the current directory, else relative
# to the repository root.
resolve() {
  if [[ "$1" == /* ]]; then
    printf '%s\n' "$1"
  elif [[ -e "$1" ]]; then
    printf '%s/%s\n' "$PWD" "$1"
  else
    printf '%s/%s\n' "$ROOT" "$1"
  fi
}

build="$(resolve "$build")"
[[ -d "$build" ]] || die "build directory not found: $build (build vigil first, or pass --build)"

find_binary() {  # NAME CANDIDATE...: the first executable candidate, else a search of $build
  local name="$1" candidate
  shift
  for candidate in "$@"; do
    if [[ -x "$candidate" && -f "$candidate" ]]; then
      printf '%s\n' "$candidate"
      return 0
    fi
  done
  find "$build" -type f -name "$name" -perm -u+x 2>/dev/null | head -n 1
}

vigil="$(find_binary vigil "$build/vigil" "$build/src/app/vigil" "$build/bin/vigil")"
[[ -n "$vigil" ]] || die "no vigil executable under $build"
