#include "../bench/bench_util.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

using coraft::bench::Flags;

namespace {
std::string parse(Flags& f, std::vector<const char*> args) {
  return f.parse(static_cast<int>(args.size()), const_cast<char**>(args.data()));
}

// Runs `f` with `stream` (stdout or stderr) sent to a temporary file; returns what it wrote.
std::string captured(std::FILE* stream, const std::function<void()>& f) {
  std::FILE* file = std::tmpfile();
  REQUIRE(file != nullptr);
  std::fflush(stream);
  const int fd = ::fileno(stream);
  const int saved = ::dup(fd);
  REQUIRE(saved >= 0);
  REQUIRE(::dup2(::fileno(file), fd) >= 0);
  f();
  std::fflush(stream);
  ::dup2(saved, fd);
  ::close(saved);
  std::rewind(file);
  std::string out;
  char buf[256];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, file)) > 0;) out.append(buf, n);
  std::fclose(file);
  return out;
}
}  // namespace

TEST_CASE("bench flags parse sizes with suffixes and booleans") {
  Flags f({{"payload", true}, {"json", false}, {"seconds", true}});
  REQUIRE(parse(f, {"--payload", "64k", "--json", "--seconds=2.5"}).empty());
  CHECK(f.size("payload", 0) == 65536);
  CHECK(f.has("json"));
  CHECK(f.real("seconds", 0) == doctest::Approx(2.5));
  CHECK(f.size("missing", 7) == 7);
  CHECK(f.value_error().empty());
}

TEST_CASE("bench flags reject unknown flags, missing values and malformed numbers") {
  Flags f({{"payload", true}, {"json", false}});
  CHECK(parse(f, {"--bogus"}) == "unknown flag --bogus");
  Flags g({{"payload", true}});
  CHECK(parse(g, {"--payload"}) == "flag --payload needs a value");
  Flags h({{"json", false}});
  CHECK(parse(h, {"--json=1"}) == "flag --json takes no value");
  Flags k({{"payload", true}});
  REQUIRE(parse(k, {"--payload", "12x"}).empty());
  CHECK(k.size("payload", 1) == 1);
  CHECK(k.value_error() == "flag --payload: '12x' is not a size");
}

TEST_CASE("latency percentiles come from the recorded samples") {
  coraft::bench::Latencies l;
  for (int i = 1; i <= 100; ++i) l.add(std::chrono::microseconds(i));
  CHECK(l.count() == 100);
  CHECK(l.percentile_us(50) == doctest::Approx(50));
  CHECK(l.percentile_us(99) == doctest::Approx(99));
  CHECK(l.percentile_us(100) == doctest::Approx(100));
  CHECK(l.mean_us() == doctest::Approx(50.5));
}

TEST_CASE("a JSON line escapes strings and joins fields") {
  coraft::bench::JsonLine j;
  j.num("entries_per_s", 1500000).str("mode", "io\"uring");
  CHECK(j.text() == R"({"entries_per_s":1.5e+06,"mode":"io\"uring"})");
}

TEST_CASE("a flag error names the command, adds the usage line when given and returns 2") {
  int status = 0;
  CHECK(captured(stderr, [&] { status = coraft::bench::flag_error("net", "unknown flag --x"); }) ==
        "coraft-bench net: unknown flag --x\n");
  CHECK(status == 2);
  status = 0;
  CHECK(captured(stderr, [&] {
          status = coraft::bench::flag_error("core", "--nodes must be 1..9", "coraft-bench core");
        }) == "coraft-bench core: --nodes must be 1..9\nusage: coraft-bench core\n");
  CHECK(status == 2);
}

TEST_CASE("a JSON line prints as one line on stdout") {
  coraft::bench::JsonLine j;
  j.str("bench", "core").num("nodes", 3);
  CHECK(captured(stdout, [&] { j.print(); }) == "{\"bench\":\"core\",\"nodes\":3}\n");
}
