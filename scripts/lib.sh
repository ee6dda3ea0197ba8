# Shared by scripts/demo, scripts/test and .ci/run. Source it; do not run it.

# The Debian packages coraft builds, tests and benchmarks with.
CORAFT_PACKAGES=(build-essential cmake ninja-build pkg-config clang ccache libasio-dev
  libcapnp-dev capnproto liburing-dev libmimalloc-dev doctest-dev libssl-dev openssl fio
  libclang-rt-14-dev libfuzzer-14-dev clang-format libcli11-dev nlohmann-json3-dev python3)

coraft_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }

# Installs whichever of CORAFT_PACKAGES is missing; does nothing when all are present.
coraft_ensure_packages() {
  local missing=()
  for p in "${CORAFT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "coraft: installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# coraft_build PRESET [extra cmake -D flags...]: configures (once) and builds with 2 jobs.
coraft_build() {
  local preset=$1
  shift
  local root
  root=$(coraft_root)
  local gen=()
  command -v ninja >/dev/null && [ ! -f "$root/build/$preset/CMakeCache.txt" ] && gen=(-G Ninja)
  local launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  (cd "$root" && cmake --preset "$preset" "${gen[@]}" "${launcher[@]}" "$@" >/dev/null) || return 1
  (cd "$root" && cmake --build --preset "$preset")
}
