// The delay before redialling a peer: exponential in the failed attempts, capped, and jittered.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>

namespace coraft::net {

// Attempt 0 waits about `min`, each further attempt doubles it up to `max`; the delay is then
// drawn uniformly from [d/2, d], so that peers that lost a node together do not redial in step.
// Postcondition: max(min,1)/2 <= result <= max(max, min).
[[nodiscard]] inline std::chrono::milliseconds backoff_delay(unsigned attempt,
                                                             std::chrono::milliseconds min,
                                                             std::chrono::milliseconds max,
                                                             std::mt19937_64& rng) {
  std::int64_t lo = std::max<std::int64_t>(min.count(), 1);
  std::int64_t hi = std::max<std::int64_t>(max.count(), lo);
  std::int64_t delay = std::min(lo << std::min(attempt, 20u), hi);
  std::uniform_int_distribution<std::int64_t> jitter(delay / 2, delay);
  return std::chrono::milliseconds(jitter(rng));
}

}  // namespace coraft::net
