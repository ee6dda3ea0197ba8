#include "integration/linearizability.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>
#include <vector>

using coraft::test::check_counter;
using coraft::test::CheckLimits;
using coraft::test::CounterOp;
using coraft::test::CounterOpKind;
using coraft::test::describe;
using coraft::test::OpOutcome;
using coraft::test::Verdict;

namespace {

CounterOp incr(int client, std::int64_t amount, std::int64_t result, std::uint64_t invoke,
               std::uint64_t complete) {
  CounterOp op;
  op.kind = CounterOpKind::incr;
  op.client = client;
  op.amount = amount;
  op.value = result;
  op.invoke = invoke;
  op.complete = complete;
  return op;
}

CounterOp incr_unknown(int client, std::int64_t amount, std::uint64_t invoke) {
  auto op = incr(client, amount, 0, invoke, 0);
  op.outcome = OpOutcome::unknown;
  return op;
}

CounterOp incr_failed(int client, std::int64_t amount, std::uint64_t invoke,
                      std::uint64_t complete) {
  auto op = incr(client, amount, 0, invoke, complete);
  op.outcome = OpOutcome::failed;
  return op;
}

CounterOp get(int client, std::int64_t value, std::uint64_t invoke, std::uint64_t complete) {
  CounterOp op;
  op.kind = CounterOpKind::get;
  op.client = client;
  op.value = value;
  op.invoke = invoke;
  op.complete = complete;
  return op;
}

Verdict verdict(const std::vector<CounterOp>& history, std::int64_t initial = 0) {
  return check_counter(history, initial).verdict;
}

// A history of `count` operations by `clients` clients, each running one operation at a time,
// produced by a real counter that takes each operation at a random instant inside its interval.
// About one in 20 increments ends unknown (half of those took effect) and one in 40 fails.
std::vector<CounterOp> generated_history(int clients, int count, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<CounterOp> ops;
  std::vector<std::uint64_t> instant;  // when each op takes effect; `never` when it does not
  constexpr std::uint64_t never = ~std::uint64_t{0};
  std::vector<std::uint64_t> free_at(static_cast<std::size_t>(clients), 0);
  for (int i = 0; i < count; ++i) {
    int c = static_cast<int>(rng() % static_cast<std::uint64_t>(clients));
    auto& t = free_at[static_cast<std::size_t>(c)];
    std::uint64_t invoke = t + rng() % 5;
    std::uint64_t complete = invoke + 1 + rng() % 30;
    t = complete + 1;
    std::uint64_t at = invoke + rng() % (complete - invoke + 1);
    if (rng() % 2 == 0) {
      auto op = incr(c, 1 + static_cast<std::int64_t>(rng() % 5), 0, invoke, complete);
      auto fate = rng() % 40;
      if (fate < 2) {
        op.outcome = OpOutcome::unknown;
        if (fate == 1) at = never;
      } else if (fate == 2) {
        op.outcome = OpOutcome::failed;
        at = never;
      }
      ops.push_back(op);
    } else {
      ops.push_back(get(c, 0, invoke, complete));
    }
    instant.push_back(at);
  }
  std::vector<std::size_t> order(ops.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return instant[a] < instant[b]; });
  std::int64_t value = 0;
  for (auto i : order) {
    if (instant[i] == never) continue;
    if (ops[i].kind == CounterOpKind::incr) value += ops[i].amount;
    ops[i].value = value;
  }
  return ops;
}

}  // namespace

TEST_CASE("an empty history is linearizable") {
  CHECK(verdict({}) == Verdict::linearizable);
}

TEST_CASE("a sequential history that matches a counter is linearizable") {
  std::vector<CounterOp> h{incr(1, 1, 1, 0, 1), incr(2, 2, 3, 2, 3), get(1, 3, 4, 5)};
  CHECK(verdict(h) == Verdict::linearizable);
  CHECK(verdict({incr(1, 5, 12, 0, 1)}, 7) == Verdict::linearizable);
}

TEST_CASE("concurrent increments may take effect in either order") {
  // b's increment takes effect first although a invoked first.
  std::vector<CounterOp> h{incr(1, 1, 3, 0, 10), incr(2, 2, 2, 1, 9), get(3, 3, 11, 12)};
  CHECK(verdict(h) == Verdict::linearizable);
}

TEST_CASE("a read concurrent with an increment may see the value before or after it") {
  for (std::int64_t seen : {0, 4}) {
    CAPTURE(seen);
    CHECK(verdict({incr(1, 4, 4, 0, 10), get(2, seen, 2, 5)}) == Verdict::linearizable);
  }
  CHECK(verdict({incr(1, 4, 4, 0, 10), get(2, 2, 2, 5)}) == Verdict::not_linearizable);
}

TEST_CASE("operations whose intervals only touch count as concurrent") {
  CHECK(verdict({incr(1, 1, 1, 0, 5), get(2, 0, 5, 6)}) == Verdict::linearizable);
  CHECK(verdict({incr(1, 1, 1, 0, 5), get(2, 0, 6, 7)}) == Verdict::not_linearizable);
}

TEST_CASE("an increment with an unknown outcome may or may not have taken effect") {
  SUBCASE("it did") {
    CHECK(verdict({incr_unknown(1, 5, 0), get(2, 5, 10, 11)}) == Verdict::linearizable);
    CHECK(verdict({incr_unknown(1, 5, 0), incr(2, 1, 6, 10, 11)}) == Verdict::linearizable);
  }
  SUBCASE("it did not") {
    CHECK(verdict({incr_unknown(1, 5, 0), get(2, 0, 10, 11)}) == Verdict::linearizable);
    CHECK(verdict({incr_unknown(1, 5, 0), incr(2, 1, 1, 10, 11)}) == Verdict::linearizable);
  }
  SUBCASE("it took effect late, between two reads") {
    std::vector<CounterOp> h{incr_unknown(1, 5, 0), get(2, 0, 10, 11), get(2, 5, 20, 21)};
    CHECK(verdict(h) == Verdict::linearizable);
  }
  SUBCASE("it cannot take effect before it was invoked") {
    CHECK(verdict({get(2, 5, 0, 1), incr_unknown(1, 5, 2)}) == Verdict::not_linearizable);
  }
  SUBCASE("once seen, it cannot be undone") {
    std::vector<CounterOp> h{incr_unknown(1, 5, 0), get(2, 5, 10, 11), get(2, 0, 20, 21)};
    CHECK(verdict(h) == Verdict::not_linearizable);
  }
}

TEST_CASE("a failed increment never took effect") {
  CHECK(verdict({incr_failed(1, 5, 0, 1), get(2, 0, 10, 11)}) == Verdict::linearizable);
  CHECK(verdict({incr_failed(1, 5, 0, 1), get(2, 5, 10, 11)}) == Verdict::not_linearizable);
}

TEST_CASE("a read with an unknown outcome constrains nothing") {
  auto lost_read = get(2, 99, 2, 3);
  lost_read.outcome = OpOutcome::unknown;
  CHECK(verdict({incr(1, 1, 1, 0, 1), lost_read}) == Verdict::linearizable);
}

TEST_CASE("a stale read is not linearizable") {
  std::vector<CounterOp> h{incr(1, 1, 1, 0, 1), incr(1, 1, 2, 2, 3), get(2, 1, 4, 5)};
  CHECK(verdict(h) == Verdict::not_linearizable);
  // Reference: linearizability requires real-time order (Herlihy and Wing 1990).
}

TEST_CASE("a lost increment is not linearizable") {
  // Both increments were acknowledged, yet the later read sees only one.
  std::vector<CounterOp> h{incr(1, 1, 1, 0, 3), incr(2, 1, 1, 1, 4), get(3, 1, 5, 6)};
  CHECK(verdict(h) == Verdict::not_linearizable);
}

TEST_CASE("a duplicated increment is not linearizable") {
  SUBCASE("seen by a later read") {
    CHECK(verdict({incr(1, 3, 3, 0, 1), get(2, 6, 2, 3)}) == Verdict::not_linearizable);
  }
  SUBCASE("seen in the increment's own answer") {
    CHECK(verdict({incr(1, 3, 6, 0, 1)}) == Verdict::not_linearizable);
  }
  SUBCASE("even when the increment's outcome was unknown") {
    std::vector<CounterOp> h{incr_unknown(1, 3, 0), get(2, 6, 5, 6)};
    CHECK(verdict(h) == Verdict::not_linearizable);
  }
}

TEST_CASE("a value that no combination of the increments explains is not linearizable") {
  std::vector<CounterOp> h{incr_unknown(1, 1, 0), incr_unknown(2, 2, 0), get(3, 4, 1, 2)};
  CHECK(verdict(h) == Verdict::not_linearizable);
  for (std::int64_t possible : {0, 1, 2, 3}) {
    CAPTURE(possible);
    h.back().value = possible;
    CHECK(verdict(h) == Verdict::linearizable);
  }
}

TEST_CASE("the explanation names the shortest failing prefix and the operation that breaks it") {
  std::vector<CounterOp> h;
  std::uint64_t t = 0;
  for (int i = 1; i <= 10; ++i, t += 2) h.push_back(incr(1, 1, i, t, t + 1));
  auto stale = get(2, 4, t, t + 1);
  h.push_back(stale);
  for (int i = 11; i <= 20; ++i) {
    t += 2;
    h.push_back(incr(1, 1, i, t, t + 1));
  }

  auto result = check_counter(h);

  REQUIRE(result.verdict == Verdict::not_linearizable);
  CAPTURE(result.explanation);
  CHECK(result.explanation.find("the first 11 operations") != std::string::npos);
  CHECK(result.explanation.find("breaks it:\n  " + describe(stale)) != std::string::npos);
}

TEST_CASE("a history the search cannot finish within its limit gets an unknown verdict") {
  auto h = generated_history(5, 200, 7);
  CheckLimits tight;
  tight.states_explored_max = 10;

  auto result = check_counter(h, 0, tight);

  CHECK(result.verdict == Verdict::unknown);
  CHECK(result.explanation.find("states_explored_max") != std::string::npos);
  CHECK(check_counter(h).verdict == Verdict::linearizable);
}

TEST_CASE("a history that breaks the input rules is refused as invalid") {
  CHECK(verdict({get(1, 0, 5, 4)}) == Verdict::invalid_input);
  CheckLimits small;
  small.ops_max = 1;
  CHECK(check_counter(std::vector<CounterOp>{get(1, 0, 0, 1), get(1, 0, 2, 3)}, 0, small).verdict ==
        Verdict::invalid_input);
}

TEST_CASE("a thousand concurrent operations by five clients are checked quickly") {
  for (std::uint64_t seed : {1, 2, 3}) {
    CAPTURE(seed);
    auto h = generated_history(5, 1000, seed);
    auto started = std::chrono::steady_clock::now();

    auto result = check_counter(h);

    auto took = std::chrono::steady_clock::now() - started;
    CHECK(result.verdict == Verdict::linearizable);
    CHECK(took < std::chrono::seconds(5));
    MESSAGE("states explored: " << result.states_explored << ", took "
                                << std::chrono::duration<double>(took).count() << " s");

    // One read in the middle that answers one more than it could have.
    auto broken = h;
    auto middle = std::find_if(broken.begin() + 500, broken.end(), [](const CounterOp& op) {
      return op.kind == CounterOpKind::get && op.outcome == OpOutcome::ok;
    });
    REQUIRE(middle != broken.end());
    middle->value += 1000;
    auto refused = check_counter(broken);
    CHECK(refused.verdict == Verdict::not_linearizable);
    CHECK(refused.explanation.find(describe(*middle)) != std::string::npos);
  }
}
