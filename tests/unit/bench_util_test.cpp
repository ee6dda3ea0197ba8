#include "../bench/bench_util.hpp"

#include <doctest/doctest.h>

#include <vector>

using coraft::bench::Flags;

namespace {
std::string parse(Flags& f, std::vector<const char*> args) {
  return f.parse(static_cast<int>(args.size()), const_cast<char**>(args.data()));
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
