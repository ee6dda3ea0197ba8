#include <unistd.h>

#include <cstdio>
#include <string>

#include <doctest/doctest.h>

#include <coraft/log.hpp>

#include "net/log_guard.hpp"

using namespace coraft;
using namespace coraft::net;
using namespace std::chrono_literals;

TEST_CASE("printable escapes control characters and non-ASCII bytes") {
  CHECK(printable("plain text: 1, 2") == "plain text: 1, 2");
  CHECK(printable("a\nb") == "a\\x0ab");
  CHECK(printable("\x1b[31mred") == "\\x1b[31mred");
  CHECK(printable(std::string("nul\0x", 5)) == "nul\\x00x");
  CHECK(printable("\x7f\xc3\xa9") == "\\x7f\\xc3\\xa9");
  CHECK(printable(printable("a\nb\x1b")) == "a\\x0ab\\x1b");  // a second pass adds nothing
}

TEST_CASE("printable cuts long text and says how much it left out") {
  std::string long_text(1000, 'y');
  CHECK(printable(long_text, 10) == "yyyyyyyyyy...(990 more bytes)");
  CHECK(printable(long_text).size() < 240);
  CHECK(printable("short", 10) == "short");
}

TEST_CASE("the log limiter lets lines_max lines through per window and counts the rest") {
  LogLimiter limiter(3, 1000ms);
  auto t = std::chrono::steady_clock::now();
  CHECK(limiter.allow(t));
  CHECK(limiter.allow(t + 1ms));
  CHECK(limiter.allow(t + 2ms));
  CHECK(!limiter.allow(t + 3ms));
  CHECK(!limiter.allow(t + 999ms));
  CHECK(limiter.suppressed_total() == 2);
  CHECK(limiter.allow(t + 1000ms));  // a new window
  CHECK(limiter.take_suppressed() == 2);
  CHECK(limiter.take_suppressed() == 0);
  CHECK(limiter.suppressed_total() == 2);
  CHECK(suppressed_note(0).empty());
  CHECK(suppressed_note(2) == " (2 similar lines suppressed before this one)");
}

TEST_CASE("the default log sink writes control characters escaped, one line per call") {
  std::FILE* capture = std::tmpfile();
  REQUIRE(capture != nullptr);
  std::fflush(stderr);
  int saved = ::dup(2);
  REQUIRE(saved >= 0);
  REQUIRE(::dup2(::fileno(capture), 2) == 2);
  set_log_sink({});
  log(LogLevel::error, "reason: bad\ncoraft error: forged\x1b[2K line");
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  std::rewind(capture);
  char buf[512] = {};
  std::size_t n = std::fread(buf, 1, sizeof buf - 1, capture);
  std::fclose(capture);
  std::string written(buf, n);
  CHECK(written == "coraft error: reason: bad\\x0acoraft error: forged\\x1b[2K line\n");
}
