#include "integration/linearizability.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <unordered_map>
#include <vector>

namespace coraft::test {
namespace {

constexpr std::uint64_t never = std::numeric_limits<std::uint64_t>::max();
constexpr int end_of_list = -1;

// The counter's transition: whether `op` may take effect in `state`, and the state after it.
// Wrapping arithmetic keeps an absurd amount from being undefined behaviour.
bool step(const CounterOp& op, std::int64_t state, std::int64_t& next) {
  if (op.kind == CounterOpKind::get) {
    next = state;
    return op.value == state;
  }
  next = static_cast<std::int64_t>(static_cast<std::uint64_t>(state) +
                                   static_cast<std::uint64_t>(op.amount));
  return op.outcome == OpOutcome::unknown || op.value == next;
}

// The (linearized set, counter value) pairs already reached. A set is a bitset of `words` words;
// its hash is the XOR of a random key per member, kept up to date as members come and go.
class StateCache {
 public:
  explicit StateCache(std::size_t words) : words_(words) {}

  // Adds the pair; false when it was there already.
  bool insert(const std::vector<std::uint64_t>& bits, std::uint64_t bits_hash, std::int64_t state) {
    std::uint64_t h = bits_hash ^ (static_cast<std::uint64_t>(state) * 0x9E3779B97F4A7C15ull);
    auto [first, last] = slots_.equal_range(h);
    for (auto it = first; it != last; ++it) {
      const std::uint64_t* stored = &arena_[it->second * (words_ + 1)];
      if (static_cast<std::int64_t>(stored[words_]) == state &&
          std::memcmp(stored, bits.data(), words_ * sizeof(std::uint64_t)) == 0) {
        return false;
      }
    }
    slots_.emplace(h, arena_.size() / (words_ + 1));
    arena_.insert(arena_.end(), bits.begin(), bits.end());
    arena_.push_back(static_cast<std::uint64_t>(state));
    return true;
  }

 private:
  std::size_t words_;
  std::vector<std::uint64_t> arena_;
  std::unordered_multimap<std::uint64_t, std::size_t> slots_;
};

// Wing and Gong's search over the call and return events of `ops`, in a doubly linked list
// from which linearized operations are lifted and to which backtracking restores them.
// Precondition: every op is ok, or an unknown incr.
class Search {
 public:
  Search(const std::vector<CounterOp>& ops, std::int64_t initial, std::uint64_t states_max)
      : ops_(ops), initial_(initial), states_max_(states_max) {
    build_events();
    std::mt19937_64 rng(0x5eed);
    keys_.resize(ops_.size());
    for (auto& k : keys_) k = rng();
  }

  Verdict run() {
    const std::size_t words = (ops_.size() + 63) / 64;
    std::vector<std::uint64_t> bits(words, 0);
    std::uint64_t bits_hash = 0;
    StateCache cache(words);
    auto flip = [&](int op) {
      bits[static_cast<std::size_t>(op) / 64] ^= 1ull << (op % 64);
      bits_hash ^= keys_[static_cast<std::size_t>(op)];
    };
    // One frame per configuration on the current path: the candidates still to try there, the
    // one whose subtree is being explored, and the counter's value.
    struct Frame {
      std::vector<int> candidates;
      std::size_t cursor = 0;
      int chosen = end_of_list;
      std::int64_t state = 0;
    };
    std::vector<Frame> path;
    path.push_back({candidates(), 0, end_of_list, initial_});
    while (next_[0] != end_of_list) {
      Frame& f = path.back();
      if (f.chosen != end_of_list) {  // its subtree failed: put the operation back
        unlift(f.chosen);
        flip(op_of_[f.chosen]);
        f.chosen = end_of_list;
      }
      bool descended = false;
      std::int64_t after = 0;
      while (f.cursor < f.candidates.size()) {
        int call = f.candidates[f.cursor++];
        int op = op_of_[call];
        if (!step(ops_[op], f.state, after)) continue;
        flip(op);
        if (!cache.insert(bits, bits_hash, after)) {
          flip(op);
          continue;
        }
        if (++explored_ > states_max_) return Verdict::unknown;
        lift(call);
        f.chosen = call;
        descended = true;
        break;
      }
      if (descended) {
        path.push_back({candidates(), 0, end_of_list, after});  // `f` dangles from here
        continue;
      }
      path.pop_back();
      if (path.empty()) return Verdict::not_linearizable;
    }
    return Verdict::linearizable;
  }

  [[nodiscard]] std::uint64_t explored() const noexcept { return explored_; }

 private:
  void build_events() {
    struct Event {
      std::uint64_t time;
      bool is_return;
      int op;
    };
    std::vector<Event> events;
    events.reserve(2 * ops_.size());
    for (std::size_t i = 0; i < ops_.size(); ++i) {
      const auto& o = ops_[i];
      events.push_back({o.invoke, false, static_cast<int>(i)});
      events.push_back(
          {o.outcome == OpOutcome::unknown ? never : o.complete, true, static_cast<int>(i)});
    }
    // At equal times calls come first, so operations that merely touch count as concurrent.
    std::sort(events.begin(), events.end(), [](const Event& a, const Event& b) {
      if (a.time != b.time) return a.time < b.time;
      if (a.is_return != b.is_return) return !a.is_return;
      return a.op < b.op;
    });
    // Node 0 is the head; event i is node i + 1.
    const int n = static_cast<int>(events.size());
    prev_.assign(n + 1, 0);
    next_.assign(n + 1, end_of_list);
    op_of_.assign(n + 1, -1);
    is_return_.assign(n + 1, false);
    match_.assign(n + 1, end_of_list);
    std::vector<int> call_node(ops_.size(), end_of_list);
    for (int i = 0; i < n; ++i) {
      int node = i + 1;
      prev_[node] = node - 1;
      next_[node - 1] = node;
      op_of_[node] = events[i].op;
      is_return_[node] = events[i].is_return;
      if (events[i].is_return) {
        match_[call_node[events[i].op]] = node;
      } else {
        call_node[events[i].op] = node;
      }
    }
  }

  // The operations that may take effect next: every call ahead of the first pending return.
  // Known operations come first; unknown increments only after them, since they may also take
  // effect any time later. Two unknown increments of the same amount that have both been
  // invoked are interchangeable from here on, so only the first is offered.
  std::vector<int> candidates() const {
    std::vector<int> known;
    std::vector<int> unknown;
    for (int node = next_[0]; node != end_of_list && !is_return_[node]; node = next_[node]) {
      const auto& op = ops_[op_of_[node]];
      if (op.outcome != OpOutcome::unknown) {
        known.push_back(node);
        continue;
      }
      bool twin = std::any_of(unknown.begin(), unknown.end(),
                              [&](int other) { return ops_[op_of_[other]].amount == op.amount; });
      if (!twin) unknown.push_back(node);
    }
    known.insert(known.end(), unknown.begin(), unknown.end());
    return known;
  }

  void unlink(int node) {
    next_[prev_[node]] = next_[node];
    if (next_[node] != end_of_list) prev_[next_[node]] = prev_[node];
  }
  void relink(int node) {
    next_[prev_[node]] = node;
    if (next_[node] != end_of_list) prev_[next_[node]] = node;
  }
  void lift(int call) {
    unlink(call);
    unlink(match_[call]);
  }
  void unlift(int call) {
    relink(match_[call]);
    relink(call);
  }

  const std::vector<CounterOp>& ops_;
  std::int64_t initial_;
  std::uint64_t states_max_;
  std::uint64_t explored_ = 0;
  std::vector<std::uint64_t> keys_;
  std::vector<int> prev_, next_, op_of_, match_;
  std::vector<bool> is_return_;
};

struct Outcome {
  Verdict verdict;
  std::uint64_t explored;
};

// Checks the operations at `order[0..kept)` as they are, and the later ones only as increments
// that may or may not have taken effect. Any linearization of the whole history is one of this
// weaker history too, so a prefix that fails proves the whole history fails.
Outcome check_prefix(std::span<const CounterOp> history, const std::vector<std::size_t>& order,
                     std::size_t kept, std::int64_t initial, std::uint64_t states_max) {
  std::vector<CounterOp> ops;
  ops.reserve(order.size());
  for (std::size_t i = 0; i < order.size(); ++i) {
    CounterOp op = history[order[i]];
    if (i >= kept && op.outcome == OpOutcome::ok) op.outcome = OpOutcome::unknown;
    bool counts = op.outcome == OpOutcome::ok ||
                  (op.outcome == OpOutcome::unknown && op.kind == CounterOpKind::incr);
    if (counts) ops.push_back(op);
  }
  Search search(ops, initial, states_max);
  Verdict v = search.run();
  return {v, search.explored()};
}

std::string explain_failure(std::span<const CounterOp> history,
                            const std::vector<std::size_t>& order, std::size_t kept,
                            std::int64_t initial, const CheckLimits& limits) {
  std::string out = "not linearizable: no order explains the first ";
  out += std::to_string(kept);
  out += " operations by invoke time (starting from ";
  out += std::to_string(initial);
  out += "; later increments taken as may-or-may-not); the last of them breaks it:\n  ";
  out += describe(history[order[kept - 1]]);
  std::size_t shown = std::min(kept, limits.explanation_ops_max);
  out += "\nthe last ";
  out += std::to_string(shown);
  out += " operations of that prefix:";
  for (std::size_t i = kept - shown; i < kept; ++i) {
    out += "\n  ";
    out += describe(history[order[i]]);
  }
  return out;
}

std::string invalid(std::span<const CounterOp> history, const CheckLimits& limits) {
  if (history.size() > limits.ops_max) {
    std::string out = "the history has ";
    out += std::to_string(history.size());
    out += " operations; ops_max is ";
    out += std::to_string(limits.ops_max);
    return out;
  }
  for (const auto& op : history) {
    if (op.outcome != OpOutcome::unknown && op.complete < op.invoke) {
      std::string out = "completes before it is invoked: ";
      out += describe(op);
      return out;
    }
  }
  return {};
}

}  // namespace

const char* to_string(Verdict v) noexcept {
  switch (v) {
    case Verdict::linearizable: return "linearizable";
    case Verdict::not_linearizable: return "not linearizable";
    case Verdict::unknown: return "unknown";
    case Verdict::invalid_input: return "invalid input";
  }
  return "?";
}

std::string describe(const CounterOp& op) {
  std::string out = "client ";
  out += std::to_string(op.client);
  out += op.kind == CounterOpKind::incr ? ": incr " : ": get";
  if (op.kind == CounterOpKind::incr) out += std::to_string(op.amount);
  switch (op.outcome) {
    case OpOutcome::ok:
      out += " -> ";
      out += std::to_string(op.value);
      break;
    case OpOutcome::failed: out += " failed"; break;
    case OpOutcome::unknown: out += " unknown"; break;
  }
  out += " [";
  out += std::to_string(op.invoke);
  out += ", ";
  out += op.outcome == OpOutcome::unknown ? std::string("?") : std::to_string(op.complete);
  out += "]";
  return out;
}

CheckResult check_counter(std::span<const CounterOp> history, std::int64_t initial,
                          const CheckLimits& limits) {
  CheckResult result;
  if (auto why = invalid(history, limits); !why.empty()) {
    result.verdict = Verdict::invalid_input;
    result.explanation = std::move(why);
    return result;
  }
  std::vector<std::size_t> order(history.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return history[a].invoke < history[b].invoke;
  });
  auto whole = check_prefix(history, order, order.size(), initial, limits.states_explored_max);
  result.verdict = whole.verdict;
  result.states_explored = whole.explored;
  if (whole.verdict == Verdict::unknown) {
    result.explanation = "the search reached states_explored_max (";
    result.explanation += std::to_string(limits.states_explored_max);
    result.explanation += ") before deciding";
    return result;
  }
  if (whole.verdict == Verdict::linearizable) return result;

  // The shortest failing prefix. Failure is monotone in the prefix length, and a prefix whose
  // search ran out of states counts as not failing, so `hi` always fails.
  std::size_t lo = 0;
  std::size_t hi = order.size();
  while (hi - lo > 1) {
    std::size_t mid = lo + (hi - lo) / 2;
    auto part = check_prefix(history, order, mid, initial, limits.states_explored_max);
    result.states_explored += part.explored;
    if (part.verdict == Verdict::not_linearizable) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  result.explanation = explain_failure(history, order, hi, initial, limits);
  return result;
}

}  // namespace coraft::test
