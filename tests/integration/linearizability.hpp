// A linearizability checker for the history of one replicated counter, as seen by its clients.
//
// Each operation is an increment by some amount (answered with the new value) or a read
// (answered with the value), with the times its client invoked it and saw it complete. The
// history is linearizable when every operation can be given one instant between its invoke and
// its completion at which it takes effect atomically, so that the values answered are those of
// a counter starting at `initial` and applying the operations in that order.
//
// Outcomes: an ok operation took effect and answered `value`. A failed one certainly never took
// effect (its error was definite) and is left out. An unknown one (timeout, outcome_unknown) may
// have taken effect at any instant after its invoke, or never, and its answer was not seen: an
// unknown increment is kept with no completion time and no answer to check, and an unknown read
// is left out, since a read that answered nobody constrains nothing.
//
// The search is Wing and Gong's: walk the events in time order, try to linearize each pending
// operation at the earliest point, and backtrack when a completion arrives for an operation not
// yet linearized. Like Lowe's refinement (and Porcupine), it remembers every (set of linearized
// operations, counter value) pair reached and never explores one twice, which keeps typical
// histories near linear time. Two more cuts keep unknown increments (which stay pending to the
// end) from multiplying the search: known operations are tried before unknown ones, and of two
// invoked unknown increments of the same amount only one is tried, since they are
// interchangeable. A named limit bounds the states explored; past it the verdict is `unknown`
// rather than a search that runs for hours.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace coraft::test {

enum class CounterOpKind : std::uint8_t { incr, get };
enum class OpOutcome : std::uint8_t { ok, failed, unknown };

struct CounterOp {
  CounterOpKind kind = CounterOpKind::get;
  OpOutcome outcome = OpOutcome::ok;
  int client = 0;              // for explanations only
  std::int64_t amount = 0;     // incr: the amount added
  std::int64_t value = 0;      // ok: the value answered (after the increment, for incr)
  std::uint64_t invoke = 0;    // any time unit, the same for every operation
  std::uint64_t complete = 0;  // ok and failed: >= invoke; ignored for unknown
};

enum class Verdict : std::uint8_t {
  linearizable,
  not_linearizable,
  unknown,        // the search reached states_explored_max before deciding
  invalid_input,  // the history breaks a rule above (see explanation)
};
[[nodiscard]] const char* to_string(Verdict v) noexcept;

struct CheckLimits {
  // States (distinct pairs of linearized set and counter value) one search may reach. Each
  // costs about (operations / 8 + 60) bytes while the search runs.
  std::uint64_t states_explored_max = 1'000'000;
  // Operations in a history at most.
  std::size_t ops_max = 100'000;
  // Operations an explanation lists at most.
  std::size_t explanation_ops_max = 12;
};

struct CheckResult {
  Verdict verdict = Verdict::unknown;
  // For not_linearizable: the shortest prefix of the history, by invoke time, that no order
  // explains (later operations kept only as increments that may or may not have happened),
  // ending with the operation that breaks it. For unknown and invalid_input: why.
  std::string explanation;
  std::uint64_t states_explored = 0;
};

[[nodiscard]] CheckResult check_counter(std::span<const CounterOp> history,
                                        std::int64_t initial = 0, const CheckLimits& limits = {});

// One line describing `op`, such as "client 2: incr 5 -> 17 [100, 140]".
[[nodiscard]] std::string describe(const CounterOp& op);

}  // namespace coraft::test
