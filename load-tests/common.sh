# Shared by the load-test scripts (sourced): finds the build directory and the vigil binary.
# Expects ROOT (the repository), build (the --build argument), BENCH_DIR (the stream cache)
# and die() to be set. Sets vigil, generator and source_sum.

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

mkdir -p "$BENCH_DIR"

# The generator: the one built with vigil if present and not older than its source, else
# compiled into BENCH_DIR (shared by every load-test script).
generator="$(find_binary vigil-generate "$build/load-tests/vigil-generate")"
if [[ -n "$generator" && "$ROOT/load-tests/generate.cc" -nt "$generator" ]]; then
  generator=""
fi
if [[ -z "$generator" ]]; then
  generator="$BENCH_DIR/vigil-generate"
  if [[ ! -x "$generator" || "$ROOT/load-tests/generate.cc" -nt "$generator" ]]; then
    echo "$(basename "$0"): compiling vigil-generate into $BENCH_DIR" >&2
    "${CXX:-c++}" -std=c++20 -O2 "$ROOT/load-tests/generate.cc" -o "$generator.tmp.$$"
    mv "$generator.tmp.$$" "$generator"
  fi
fi

# Cached streams are named by the generator's arguments and a checksum of its source, so a
# changed generator never reuses a stale file.
source_sum="$(cksum < "$ROOT/load-tests/generate.cc" | cut -d' ' -f1)"
