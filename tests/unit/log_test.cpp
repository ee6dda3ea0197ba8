#include <coraft/log.hpp>

#include <doctest/doctest.h>

#include <string>
#include <vector>

TEST_CASE("log lines reach the installed sink, filtered by level") {
  std::vector<std::pair<coraft::LogLevel, std::string>> lines;
  coraft::set_log_sink([&](coraft::LogLevel l, std::string_view s) { lines.emplace_back(l, s); });
  coraft::set_log_level(coraft::LogLevel::info);

  coraft::log(coraft::LogLevel::debug, "hidden");
  coraft::log(coraft::LogLevel::warn, "segment ", std::string("a.log"), " truncated at ", 4096u,
              " in term ", coraft::Term(3));
  CHECK_FALSE(coraft::log_enabled(coraft::LogLevel::debug));
  CHECK(coraft::log_enabled(coraft::LogLevel::error));

  coraft::set_log_level(coraft::LogLevel::off);
  coraft::log(coraft::LogLevel::error, "silenced");
  coraft::set_log_level(coraft::LogLevel::info);
  coraft::set_log_sink({});

  REQUIRE(lines.size() == 1);
  CHECK(lines[0].first == coraft::LogLevel::warn);
  CHECK(lines[0].second == "segment a.log truncated at 4096 in term 3");
}
