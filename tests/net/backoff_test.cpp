#include <set>

#include <doctest/doctest.h>

#include "net/backoff.hpp"

using namespace std::chrono_literals;
using coraft::net::backoff_delay;

TEST_CASE("the redial delay doubles per failed attempt up to its cap") {
  std::mt19937_64 rng(7);
  for (unsigned attempt = 0; attempt < 40; ++attempt) {
    auto expected = std::min<std::int64_t>(10ll << std::min(attempt, 20u), 1000);
    for (int draw = 0; draw < 50; ++draw) {
      auto d = backoff_delay(attempt, 10ms, 1000ms, rng).count();
      CHECK(d >= expected / 2);
      CHECK(d <= expected);
    }
  }
}

TEST_CASE("the redial delay is jittered so that peers do not redial in step") {
  std::mt19937_64 rng(7);
  std::set<std::int64_t> seen;
  for (int draw = 0; draw < 100; ++draw) seen.insert(backoff_delay(6, 10ms, 1000ms, rng).count());
  CHECK(seen.size() > 10);
}

TEST_CASE("a zero or inverted delay range still yields a positive bounded delay") {
  std::mt19937_64 rng(1);
  for (unsigned attempt = 0; attempt < 5; ++attempt) {
    auto d = backoff_delay(attempt, 0ms, 0ms, rng).count();
    CHECK(d >= 0);
    CHECK(d <= 1);
    auto e = backoff_delay(attempt, 50ms, 10ms, rng).count();
    CHECK(e >= 25);
    CHECK(e <= 50);
  }
}
