#include "../bench/bench_util.hpp"
#include "../bench/commands.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace {
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

TEST_CASE("sizes take the k, m and g suffixes and refuse anything else") {
  using coraft::bench::parse_size;
  CHECK(parse_size("4096") == 4096u);
  CHECK(parse_size("64k") == 65536u);
  CHECK(parse_size("1M") == (1u << 20));
  CHECK(parse_size("2g") == (2ull << 30));
  CHECK(parse_size("0") == 0u);
  CHECK_FALSE(parse_size(""));
  CHECK_FALSE(parse_size("k"));
  CHECK_FALSE(parse_size("12x"));
  CHECK_FALSE(parse_size("1kb"));
  CHECK_FALSE(parse_size("-1"));
  CHECK_FALSE(parse_size("1.5k"));
  CHECK(parse_size("17179869183g") == (17179869183ull << 30));  // the largest that fits
  CHECK_FALSE(parse_size("17179869184g"));                      // 2^64: past the range
  CHECK_FALSE(parse_size("18446744073709551616"));              // 2^64 without a suffix
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
  j.num("entries_per_s", 1500000).str("mode", "io\"uring").num("p50_us", 2.5);
  CHECK(j.text() == R"({"entries_per_s":1500000,"mode":"io\"uring","p50_us":2.5})");
}

TEST_CASE("a JSON line prints as one line on stdout") {
  coraft::bench::JsonLine j;
  j.str("bench", "core").num("nodes", 3);
  CHECK(captured(stdout, [&] { j.print(); }) == "{\"bench\":\"core\",\"nodes\":3}\n");
}

TEST_CASE("the disk floor measures durable writes and names what failed") {
  namespace fs = std::filesystem;
  const fs::path dir =
      fs::temp_directory_path() / ("coraft-disk-floor-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  for (std::size_t servers : {1u, 3u}) {
    std::string why;
    auto f = coraft::bench::measure_disk_floor(dir.string(), servers, 0.2, why);
    REQUIRE_MESSAGE(f.has_value(), why);
    CHECK(f->alone_p50_us > 0);
    CHECK(f->majority_p50_us > 0);
    CHECK(f->majority_p99_us >= f->majority_p50_us);
    CHECK(fs::is_empty(dir));  // its files are gone
  }
  fs::remove_all(dir);
  // A directory that is not there: a message naming the file and the reason, no figures.
  std::string why;
  auto f = coraft::bench::measure_disk_floor((dir / "missing").string(), 3, 0.2, why);
  CHECK_FALSE(f.has_value());
  CHECK(why.find("create " + (dir / "missing" / "disk-floor-1").string()) == 0);
  CHECK(why.find("No such file or directory") != std::string::npos);
}
